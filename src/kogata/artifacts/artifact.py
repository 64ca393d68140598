"""Artifacts: immutable folders holding one model in one format, described by ``kogata.json``.

The manifest records the id (a content hash over the files), the parent artifact, the lineage (every
method step that produced it), the format (``hf`` or ``gguf``), parameter count, bytes on disk, the sha256 of
each file and the versions of the tools involved.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "kogata.json"
MANIFEST_VERSION = 1
FORMATS = ("hf", "gguf", "search-index")  # search-index: a document index (kogata.search.index), not a model
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_TOOLS = ("kogata", "torch", "transformers", "gguf", "llama_cpp_python", "peft", "safetensors")


@dataclass
class LineageStep:
    """One method application: what ran, with which full config, on which data, for how long."""

    method: str
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    data_fingerprint: str | None = None
    duration_s: float = 0.0
    source: str | None = None  # e.g. the GGUF file or hub id an import came from
    note: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # facts the step measured (coverage, losses …)
    tool_versions: dict[str, str] = field(default_factory=dict)
    finished_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tool_versions() -> dict[str, str]:
    out = {}
    for dist in _TOOLS:
        try:
            out[dist] = metadata.version(dist.replace("_python", "-python") if dist.endswith("_python") else dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_folder(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (relative posix path → hex), manifest excluded."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(folder).as_posix()] = sha256_file(p)
    return files


def content_id(fmt: str, files: dict[str, str]) -> str:
    """The artifact id: a hash over the format and each file's name and sha256."""
    h = hashlib.sha256(fmt.encode())
    for name in sorted(files):
        h.update(f"\0{name}\0{files[name]}".encode())
    return h.hexdigest()[:16]


@dataclass
class Artifact:
    """A model folder in the store, read from its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.id

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def parent(self) -> str | None:
        return self.manifest.get("parent")

    @property
    def lineage(self) -> list[dict[str, Any]]:
        return self.manifest.get("lineage", [])

    @property
    def params(self) -> int | None:
        return self.manifest.get("params")

    @property
    def bytes(self) -> int:
        return self.manifest.get("bytes", 0)

    @property
    def architecture(self) -> str | None:
        return self.manifest.get("architecture")

    @property
    def kind(self) -> str:
        """``causal-lm`` or ``embedder``."""
        return self.manifest.get("kind", "causal-lm")

    @property
    def gguf_path(self) -> Path:
        """The model file of a ``gguf`` artifact."""
        if self.format != "gguf":
            raise ValueError(f"artifact {self.id} is {self.format}, not gguf")
        return self.path / self.manifest["model_file"]

    @classmethod
    def read(cls, folder: Path) -> Artifact:
        return cls(path=folder, manifest=json.loads((folder / MANIFEST).read_text(encoding="utf-8")))

    def verify(self) -> list[str]:
        """Re-hash every file; return the problems found (empty when intact)."""
        problems = []
        recorded: dict[str, str] = self.manifest.get("files", {})
        actual = hash_folder(self.path)
        for name, digest in recorded.items():
            if name not in actual:
                problems.append(f"missing file {name}")
            elif actual[name] != digest:
                problems.append(f"{name}: sha256 {actual[name][:12]}… does not match manifest {digest[:12]}…")
        for name in actual.keys() - recorded.keys():
            problems.append(f"unexpected file {name}")
        if not problems and content_id(self.format, recorded) != self.id:
            problems.append("manifest id does not match the recorded file hashes (manifest edited)")
        return problems


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False), encoding="utf-8")
    tmp.replace(folder / MANIFEST)
