"""The store: ``$KOGATA_HOME`` with immutable artifact folders and a SQLite index.

Layout::

    $KOGATA_HOME/
      kogata.db              SQLite index (artifacts, runs, search state, service tables; see kogata.core.db)
      artifacts/<id>/        one folder per artifact, holding kogata.json and the model files
      tmp/                   staging folders; an artifact appears under artifacts/ only when complete

Every writer stages into ``tmp/`` and calls :meth:`Staging.commit`, which hashes the files, writes the
manifest and renames the folder into place. A crash leaves only a staging folder, removed on next open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import kogata.core.settings as settings
from kogata.artifacts.artifact import (
    FORMATS,
    MANIFEST,
    MANIFEST_VERSION,
    Artifact,
    LineageStep,
    content_id,
    hash_folder,
    tool_versions,
    write_manifest,
)
from kogata.core.db import ArtifactRow, make_engine, store_url
from kogata.core.errors import KogataError
from kogata.core.process import pid_alive


class Staging:
    """A temporary folder that becomes an artifact on :meth:`commit`."""

    def __init__(self, store: Store, folder: Path):
        self.store = store
        self.dir = folder
        self.artifact: Artifact | None = None

    def commit(
        self,
        *,
        format: str,
        name: str | None = None,
        parent: Artifact | None = None,
        step: LineageStep | None = None,
        model_file: str | None = None,
        params: int | None = None,
        architecture: str | None = None,
        kind: str = "causal-lm",
        extra: dict[str, Any] | None = None,
    ) -> Artifact:
        if format not in FORMATS:
            raise ValueError(f"unknown artifact format {format!r}")
        files = hash_folder(self.dir)
        if not files:
            raise KogataError("nothing was written for the new artifact", "this is a bug in the method; please report it")
        art_id = content_id(format, files)
        lineage = list(parent.lineage) if parent is not None else []
        if step is not None:
            if not step.tool_versions:
                step.tool_versions = tool_versions()
            lineage.append(step.to_dict())
        if params is None:
            from kogata.artifacts.inspect import count_params

            params = count_params(self.dir, format, model_file)
        manifest: dict[str, Any] = {
            "manifest_version": MANIFEST_VERSION,
            "id": art_id,
            "name": name or art_id,
            "format": format,
            "kind": kind,
            "architecture": architecture,
            "model_file": model_file,
            "parent": parent.id if parent is not None else None,
            "lineage": lineage,
            "params": params,
            "bytes": sum((self.dir / f).stat().st_size for f in files),
            "files": files,
            "tool_versions": tool_versions(),
            "created": time.time(),
            **(extra or {}),
        }
        existing = self.store.find(art_id)
        if existing is not None:  # same bytes already stored: reuse, keep the first manifest
            shutil.rmtree(self.dir, ignore_errors=True)
            self.artifact = existing
            return existing
        self.store.check_name_free(manifest["name"], art_id)
        write_manifest(self.dir, manifest)
        final = self.store.artifacts_dir / art_id
        os.replace(self.dir, final)
        self.artifact = Artifact.read(final)
        self.store._index(self.artifact)
        return self.artifact


class Store:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else settings.kogata_home()
        self.artifacts_dir = self.home / "artifacts"
        self.tmp_dir = self.home / "tmp"
        try:
            for d in (self.home, self.artifacts_dir, self.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.tmp_dir / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise KogataError(
                f"KOGATA_HOME {self.home} is not writable ({exc.strerror or exc})",
                "set KOGATA_HOME to a folder you can write, e.g. export KOGATA_HOME=$HOME/.kogata",
            ) from None
        self.engine = make_engine(store_url(self.home))  # brings the schema up to date (Alembic migrations)
        self._clean_stale_staging()
        self._reconcile()

    # ---- staging -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self) -> Iterator[Staging]:
        """Yield a :class:`Staging` folder; it is deleted unless committed."""
        folder = self.tmp_dir / f"stage-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        staging = Staging(self, folder)
        try:
            yield staging
        finally:
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)

    def _clean_stale_staging(self) -> None:
        for folder in self.tmp_dir.glob("stage-*"):
            try:
                pid = int(folder.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if not pid_alive(pid):
                shutil.rmtree(folder, ignore_errors=True)

    # ---- index ---------------------------------------------------------------------------------
    def _index(self, art: Artifact) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(
                ArtifactRow(
                    id=art.id,
                    name=art.name,
                    format=art.format,
                    kind=art.kind,
                    architecture=art.architecture,
                    parent=art.parent,
                    params=art.params,
                    bytes=art.bytes,
                    path=str(art.path),
                    created=art.manifest.get("created", time.time()),
                    manifest=art.manifest,
                )
            )

    def _reconcile(self) -> None:
        """Index artifact folders that exist on disk but not in the database, drop rows whose folder is gone."""
        on_disk = {p.name for p in self.artifacts_dir.iterdir() if (p / MANIFEST).is_file()}
        with Session(self.engine) as s:
            indexed = {row.id: row.path for row in s.execute(select(ArtifactRow)).scalars()}
        for art_id in on_disk - indexed.keys():
            try:
                self._index(Artifact.read(self.artifacts_dir / art_id))
            except (ValueError, KeyError):
                continue
        gone = [i for i, p in indexed.items() if not (Path(p) / MANIFEST).is_file()]
        if gone:
            with Session(self.engine) as s, s.begin():
                for art_id in gone:
                    s.delete(s.get(ArtifactRow, art_id))

    def name_taken(self, name: str) -> bool:
        with Session(self.engine) as s:
            return s.execute(select(ArtifactRow.id).where(ArtifactRow.name == name)).first() is not None

    def check_name_free(self, name: str, art_id: str | None = None) -> None:
        with Session(self.engine) as s:
            row = s.execute(select(ArtifactRow).where(ArtifactRow.name == name)).scalar_one_or_none()
        if row is not None and row.id != art_id:
            raise KogataError(
                f"artifact name {name!r} is already used by {row.id}",
                "choose another name with --out, or remove the old one with `kogata models rm`",
            )

    def find(self, ref: str) -> Artifact | None:
        """An artifact by exact name, id, or unique id prefix (≥ 4 characters); None when absent."""
        with Session(self.engine) as s:
            row = s.execute(select(ArtifactRow).where(ArtifactRow.name == ref)).scalar_one_or_none()
            if row is None:
                row = s.get(ArtifactRow, ref)
            if row is None and len(ref) >= 4:
                rows = s.execute(select(ArtifactRow).where(ArtifactRow.id.startswith(ref))).scalars().all()
                if len(rows) > 1:
                    raise KogataError(f"artifact id prefix {ref!r} is ambiguous", "give more characters of the id")
                row = rows[0] if rows else None
            path = Path(row.path) if row is not None else None
        if path is None or not (path / MANIFEST).is_file():
            return None
        return Artifact.read(path)

    def get(self, ref: str) -> Artifact:
        art = self.find(ref)
        if art is None:
            raise KogataError(
                f"no artifact named {ref!r} in {self.home}",
                "see `kogata models list`, or bring it in with `kogata models pull NAME` / `kogata models import PATH`",
            )
        return art

    def list(self) -> list[Artifact]:
        with Session(self.engine) as s:
            paths = [Path(r.path) for r in s.execute(select(ArtifactRow).order_by(ArtifactRow.created)).scalars()]
        return [Artifact.read(p) for p in paths if (p / MANIFEST).is_file()]

    def children(self, art_id: str) -> list[Artifact]:
        return [a for a in self.list() if a.parent == art_id]

    def remove(self, ref: str) -> Artifact:
        art = self.get(ref)
        trash = self.tmp_dir / f"stage-{os.getpid()}-rm-{art.id}"
        os.replace(art.path, trash)
        with Session(self.engine) as s, s.begin():
            row = s.get(ArtifactRow, art.id)
            if row is not None:
                s.delete(row)
        shutil.rmtree(trash, ignore_errors=True)
        return art
