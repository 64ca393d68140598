"""Publish the optimize output atomically: results.json, report.html, summary.md, details.html appear together
(staged next to the destination, renamed into place; an earlier report folder is replaced only then)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.core.io import atomic_write_json, publish_folder, staging_folder


def publish_optimize(results: dict[str, Any], out_dir: Path) -> Path:
    from kogata.report.optimize import write

    out_dir = Path(out_dir).expanduser().resolve()
    staging = staging_folder(out_dir, marker="results.json", what="report")
    try:
        atomic_write_json(results, staging / "results.json")
        write(results, staging)
        publish_folder(staging, out_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KogataError(f"cannot write the report to {out_dir} ({exc.strerror or exc})", "choose a writable --out folder") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
