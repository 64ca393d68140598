"""Writing results so that a reader never sees half of them.

* :func:`atomic_text_file` opens a temporary file next to its target and renames it into place only when
  the ``with`` block completes; :func:`atomic_write_json` writes a JSON document next to its target and renames it into place (JSON has no
  NaN or infinity: those become ``null``; keys become strings; Japanese stays readable, ``ensure_ascii=False``).
* :func:`staging_folder` + :func:`publish_folder`: a results folder is assembled in ``.NAME.partial-<pid>``
  next to its destination and renamed into place when complete; an existing folder is replaced only then.
  ``staging_folder`` refuses to take over a folder that holds something other than an earlier result (it
  would be replaced), recognised by a marker file such as ``results.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kogata.core.errors import KogataError


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None and keys turned into strings (recursively)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@contextlib.contextmanager
def atomic_text_file(path: Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text file that appears at ``path`` only when the ``with`` block completes (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(data: Any, path: Path, *, indent: int | None = 2) -> Path:
    """Write ``data`` as UTF-8 JSON to ``path`` through a temporary file renamed into place."""
    with atomic_text_file(path) as fh:
        fh.write(json.dumps(json_safe(data), indent=indent, ensure_ascii=False, default=str))
    return Path(path)


def staging_folder(out_dir: Path, *, marker: str = "results.json", subdirs: tuple[str, ...] = (), what: str = "results") -> Path:
    """A fresh, empty staging folder next to ``out_dir`` (with ``subdirs`` created inside).

    Raises :class:`KogataError` if ``out_dir`` is a file, a non-empty folder without ``marker`` (not an
    earlier result: it would be replaced), or cannot be written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise KogataError(f"--out {out_dir} is a file", "give a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / marker).is_file():
        raise KogataError(f"--out {out_dir} exists and is not a kogata {what} folder", "choose a new or empty folder; it would be replaced")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for sub in subdirs:
            (staging / sub).mkdir(parents=True)
    except OSError as exc:
        raise KogataError(f"cannot write the {what} to {out_dir} ({exc.strerror or exc})", "choose a folder you can write to with --out") from None
    return staging


def publish_folder(staging: Path, out_dir: Path) -> Path:
    """Move the complete ``staging`` folder to ``out_dir``, replacing an earlier ``out_dir`` only now."""
    staging, out_dir = Path(staging), Path(out_dir)
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    try:
        os.replace(staging, out_dir)
    except OSError:
        if old is not None:  # put the earlier result back
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir
