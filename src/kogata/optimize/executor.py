"""Where candidates are built and evaluated: in this process (default) or as Ray tasks on a Ray cluster.

Both run the same function, :func:`build_and_evaluate`, which needs only the project file, one candidate
and the store (``KOGATA_HOME``; on a cluster it must be a shared filesystem every node mounts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError


def build_and_evaluate(project_path: str, cand: dict[str, Any], kogata_home: str, base_id: str,
                       logs: str, on_stage: Callable[[str], None] | None = None, threads: int | None = None,
                       limit: int | None = None) -> dict[str, Any]:
    """Build the candidate's recipe from the base artifact, evaluate the result on the project's runtime
    (quality on ``limit`` items per task, speed with ``threads``; the project's values when None)."""
    os.environ["KOGATA_HOME"] = kogata_home
    import kogata.core.settings as settings
    from kogata.artifacts.store import Store
    from kogata.eval.run import EvalProgress, run_entry
    from kogata.methods.recipe import run_recipe
    from kogata.methods.registry import MethodContext
    from kogata.optimize.loop import load_project_suite
    from kogata.optimize.project import load_project

    stage = on_stage or (lambda s: None)
    project = load_project(Path(project_path))
    threads = threads or project.threads
    settings.set_threads(threads)
    store = Store()
    base = store.get(base_id)
    started = time.time()
    produced = []
    if cand["steps"]:
        stage(f"building: {' → '.join(s['method'] for s in cand['steps'])}")
        ctx = MethodContext(store=store, data=list(project.data), seed=0, log=lambda m: stage(m))
        produced = run_recipe(base, cand["steps"], ctx)
    artifact = produced[-1] if produced else base
    build_s = time.time() - started

    class _Progress(EvalProgress):
        def stage(self, key: str, text: str) -> None:
            stage(text)

        def task(self, key: str, task: str, done: int, total: int) -> None:
            stage(f"{task} {done}/{total}")

    suite = load_project_suite(project)
    Path(logs).mkdir(parents=True, exist_ok=True)
    entry = run_entry(artifact, project.runtime, suite, limit=limit if limit is not None else project.limit, threads=threads, options={},
                       logs=Path(logs), progress=_Progress())
    entry["timings"]["build_s"] = build_s
    return {"artifact_id": artifact.id, "artifact_ids": [a.id for a in produced], "entry": entry}


def confirm_quality(project_path: str, artifact_id: str, kogata_home: str, threads: int, limit: int | None,
                    on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Quality only, on ``limit`` items per task (the finalists' confirmation; speed was measured already)."""
    os.environ["KOGATA_HOME"] = kogata_home
    import kogata.core.settings as settings
    from kogata.artifacts.store import Store
    from kogata.eval.quality import evaluate_quality
    from kogata.optimize.loop import load_project_suite
    from kogata.optimize.project import load_project
    from kogata.runtimes import open_runtime

    stage = on_stage or (lambda s: None)
    project = load_project(Path(project_path))
    settings.set_threads(threads)
    artifact = Store().get(artifact_id)
    suite = load_project_suite(project)
    rt = open_runtime(project.runtime, artifact)
    try:
        return evaluate_quality(rt, suite, limit=limit, progress=lambda task, done, total: stage(f"confirming {task} {done}/{total}"))
    finally:
        rt.close()


class LocalExecutor:
    """One candidate at a time, in this process."""

    parallel = 1

    def run(self, jobs: list[tuple[str, dict[str, Any]]], args: dict[str, Any], on_stage: Callable[[str], None]) -> Iterator[tuple[str, dict[str, Any] | BaseException]]:
        for key, cand in jobs:
            try:
                yield key, build_and_evaluate(cand=cand, on_stage=on_stage, **args)
            except KogataError as exc:
                yield key, exc


class RayExecutor:
    """Candidates as Ray tasks (``ray.init(address)``: "auto" joins a running cluster, None starts a local one)."""

    def __init__(self, address: str | None = None, parallel: int | None = None, threads: int = 1):
        try:
            import ray
        except ImportError:
            raise KogataError("--executor ray needs the ray package", "pip install 'ray>=2.40' (or `pip install kogata[ray]`)") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        nodes = len([n for n in ray.nodes() if n.get("Alive")]) or 1
        self.threads = threads
        # one measurement per node at a time, so candidates never compete for the same cores
        self.parallel = parallel or nodes
        self.remote = ray.remote(num_cpus=min(threads, cpus))(build_and_evaluate)

    def run(self, jobs: list[tuple[str, dict[str, Any]]], args: dict[str, Any], on_stage: Callable[[str], None]) -> Iterator[tuple[str, dict[str, Any] | BaseException]]:
        refs = {self.remote.remote(cand=cand, **args): key for key, cand in jobs}
        on_stage(f"{len(refs)} candidate(s) running as Ray tasks")
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1)
            key = refs.pop(done[0])
            try:
                yield key, self.ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the task's own exception
                cause = getattr(exc, "cause", None) or exc
                yield key, cause if isinstance(cause, KogataError) else KogataError(f"Ray task failed: {str(cause).splitlines()[0][:300]}")

    def shutdown(self) -> None:
        pass
