"""Write the optimize results folder atomically: results.json, report.html, summary.md, details.html."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError


def publish(results: dict[str, Any], out_dir: Path) -> Path:
    from kogata.eval.run import write_json
    from kogata.report.optimize import write

    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "results.json").exists():
        raise KogataError(f"{out_dir} exists and is not a kogata report folder", "choose another --out folder")
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        write_json(results, staging / "results.json")
        write(results, staging)
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, out_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KogataError(f"cannot write the report to {out_dir} ({exc.strerror or exc})", "choose a writable --out folder") from None
    return out_dir
