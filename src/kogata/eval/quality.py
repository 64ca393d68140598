"""Run every task of a suite on one runtime and collect the per-task results."""

from __future__ import annotations

from typing import Any

from kogata.eval.suite import Suite
from kogata.eval.tasks import Progress


def evaluate_quality(
    runtime: Any,
    suite: Suite,
    limit: int | None = None,
    progress: Progress | None = None,
    tasks: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{task name: task result}`` for the suite's tasks (or only those named in ``tasks``), in suite order.

    ``limit`` caps the items per task (on top of each task's own ``limit``); ``progress(task, done, total)``
    is called as items finish. Same runtime, artifact and suite seed give the same numbers on rerun.
    """
    selected = suite.tasks if tasks is None else [suite.task(name) for name in tasks]
    return {task.name: task.run(runtime, progress=progress, limit=limit) for task in selected}
