"""Bring models into the store: catalog pulls, local HF folders and GGUF files, hub ids."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from kogata.artifacts.artifact import Artifact, LineageStep
from kogata.artifacts.catalog import catalog_entry, ensure_installed
from kogata.artifacts.inspect import inspect_path
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Files worth keeping from a HF folder (weights are safetensors; pickles only when converted)
HF_KEEP = re.compile(r"(\.safetensors|\.json|\.jinja|\.model|\.txt|\.tiktoken)$")

Log = Callable[[str], None]


def pull(store: Store, name: str, *, log: Log = print) -> Artifact:
    """Install the catalog model's package, import its weights, and (for LMs) convert once to a float HF artifact.

    Returns the artifact the catalog name refers to (the float ``hf`` baseline for LMs). Reuses what exists.
    """
    entry = catalog_entry(name)
    existing = store.find(name)
    if existing is not None:
        log(f"{name} is already in the store ({existing.id}); reusing it")
        return existing
    ensure_installed(entry, log)
    if entry.kind == "embedder":
        folder = entry.locate(entry, store.tmp_dir)
        return import_local(store, folder, name=name, source=f"pypi:{entry.package}", log=log)
    gguf_name = f"{name}-gguf"
    gguf_art = store.find(gguf_name)
    if gguf_art is None or gguf_art.verify():
        if gguf_art is not None:  # damaged: replace it
            store.remove(gguf_art.id)
        work = store.tmp_dir / f"stage-{os.getpid()}-assemble"
        work.mkdir(exist_ok=True)
        try:
            gguf_file = entry.locate(entry, work)
            gguf_art = import_local(store, gguf_file, name=gguf_name, source=f"pypi:{entry.package}/{gguf_file.name}", log=log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f"converting {gguf_name} to a float safetensors baseline (once)")
    return convert_gguf_to_hf(store, gguf_art, name=name, log=log)


def import_path(store: Store, ref: str, *, name: str | None = None, allow_pickle: bool = False, log: Log = print) -> Artifact:
    """``kogata models import``: a local folder/file, or a hub id when a network is there."""
    path = Path(ref).expanduser()
    if not path.exists() and HUB_ID.match(ref) and not ref.startswith((".", "/")):
        return import_hub(store, ref, name=name, log=log)
    return import_local(store, path, name=name, allow_pickle=allow_pickle, source=str(path.resolve()), log=log)


def import_local(
    store: Store,
    path: Path,
    *,
    name: str | None = None,
    allow_pickle: bool = False,
    source: str | None = None,
    log: Log = print,
) -> Artifact:
    info = inspect_path(path, allow_pickle=allow_pickle)
    if name:
        store.check_name_free(name)
    started = time.time()
    step_cfg = {"format": info.format}
    with store.stage() as st:
        if info.format == "gguf":
            src = path if path.is_file() else path / info.model_file
            log(f"copying {src.name} ({src.stat().st_size / 2**20:.0f} MiB) into the store")
            shutil.copyfile(src, st.dir / src.name)
        elif info.pickle_files and not any(path.glob("*.safetensors")):
            log("converting the pickle checkpoint to safetensors (--allow-pickle)")
            _pickle_to_safetensors(path, st.dir)
            step_cfg["converted_from_pickle"] = True
        else:
            _copy_hf_folder(path, st.dir)
        step = LineageStep(method="import", config=step_cfg, source=source or str(path), duration_s=time.time() - started)
        return st.commit(
            format=info.format,
            name=name,
            step=step,
            model_file=info.model_file,
            architecture=info.architecture,
            kind=info.kind,
        )


def _copy_hf_folder(src: Path, dst: Path) -> None:
    """The model files of a HF folder; for a sentence-transformers folder also its module subfolders
    (``modules.json`` paths such as ``1_Pooling/``), keeping their layout."""
    folders = [src]
    modules = src / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KogataError(f"{modules} is not valid JSON ({exc})", "repair or re-download the model folder") from None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            sub = (src / str(entry.get("path") or "")).resolve()
            if sub != src.resolve() and sub.is_dir() and sub.is_relative_to(src.resolve()):
                folders.append(sub)
    for folder in folders:
        target = dst / folder.resolve().relative_to(src.resolve())
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.iterdir()):
            if f.is_file() and HF_KEEP.search(f.name):
                shutil.copyfile(f, target / f.name)


def _pickle_to_safetensors(folder: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=False, trust_remote_code=False)
    model.save_pretrained(out, safe_serialization=True)
    try:
        AutoTokenizer.from_pretrained(folder, trust_remote_code=False).save_pretrained(out)
    except (OSError, ValueError):
        pass


def import_hub(store: Store, repo_id: str, *, name: str | None = None, log: Log = print) -> Artifact:
    hint = "download the model folder on a connected machine and run `kogata models import PATH`"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise KogataError(f"cannot fetch {repo_id} from the Hugging Face hub: HF_HUB_OFFLINE=1", hint)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        raise KogataError("huggingface_hub is not installed", "pip install huggingface_hub") from None
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    dl = store.tmp_dir / f"stage-{os.getpid()}-hub"
    try:
        log(f"downloading {repo_id} from the Hugging Face hub")
        snapshot_download(repo_id, local_dir=dl, allow_patterns=["*.safetensors", "*.json", "*.jinja", "*.model", "*.txt"])
        return import_local(store, dl, name=name, source=f"hub:{repo_id}", log=log)
    except KogataError:
        raise
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KogataError(f"cannot fetch {repo_id} from the Hugging Face hub ({type(exc).__name__}: {msg[:160]})", hint) from None
    finally:
        shutil.rmtree(dl, ignore_errors=True)


def convert_gguf_to_hf(store: Store, gguf_art: Artifact, *, name: str | None = None, dtype: str = "float32", log: Log = print) -> Artifact:
    """Dequantise a GGUF artifact into a float safetensors ``hf`` artifact whose lineage points at the GGUF.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model; the working route is to rebuild the
    model from its config without the quantization settings and copy the state dict across.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from kogata.artifacts.load import load_torch

    started = time.time()
    model, tokenizer = load_torch(gguf_art, dtype="float32")
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    target_dtype = getattr(torch, dtype)
    fresh = AutoModelForCausalLM.from_config(cfg, dtype=target_dtype)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embedding
    if missing or unexpected:
        raise KogataError(f"GGUF→HF conversion of {gguf_art.name} lost tensors: {missing[:3]} {unexpected[:3]}", "report this model")
    del model
    with store.stage() as st:
        fresh.save_pretrained(st.dir, safe_serialization=True)
        tokenizer.save_pretrained(st.dir)
        step = LineageStep(
            method="gguf-to-hf",
            config={"dtype": dtype, "note": "dequantised from the GGUF; the float baseline every compression is measured against"},
            source=gguf_art.gguf_path.name,
            duration_s=time.time() - started,
        )
        return st.commit(format="hf", name=name, parent=gguf_art, step=step, architecture=cfg.model_type)
