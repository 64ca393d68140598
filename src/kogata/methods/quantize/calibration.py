"""Importance matrices for calibrated quantization: computed once per model and data, kept as their own artifact.

An importance matrix (imatrix) holds, for every weight matrix of the model, the mean squared activation of each
input column over some text. llama.cpp's quantizers use it to spend their rounding error on the columns that
matter least (every type uses it when given; the IQ types are designed around it).

* ``calibration=PATH`` (a text/Markdown/JSONL/JSON file or a folder, read like the other methods' ``--data``
  with :func:`kogata.methods._shared.texts.read_texts`, texts joined by blank lines) → ``llama-imatrix`` over
  chunks of ``imatrix_ctx`` tokens → an artifact of kind ``imatrix`` (format ``gguf``: the file is llama.cpp's
  GGUF imatrix) whose parent is the model and whose manifest says which model, data fingerprint, context and
  chunk count it was made from. The same model with the same data, context and chunks reuses it.
* ``imatrix=REF`` uses an existing one: an ``imatrix`` artifact (name or id) or a GGUF imatrix file. Its entries
  must name this model's tensors with the same row width, else it was made for another model.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kogata.core.settings as settings
from kogata.artifacts.artifact import Artifact, LineageStep, sha256_file
from kogata.artifacts.artifact import tool_versions as python_tool_versions
from kogata.core.errors import KogataError
from kogata.methods.gguf import llamacpp_tools
from kogata.methods.registry import MethodContext, data_fingerprint

IMATRIX_KIND = "imatrix"
IMATRIX_FILE = "imatrix.gguf"
MIN_CHUNKS = 2  # llama-imatrix refuses text shorter than two contexts


@dataclass
class CalibrationText:
    """The user's calibration documents as one text, with what identifies them."""

    path: Path
    text: str
    fingerprint: str
    records: int


@dataclass
class ImatrixChoice:
    """The importance matrix a quantize step uses: its file, what identifies it, and the artifact if stored."""

    path: Path
    fingerprint: str  # the data fingerprint of a computed one; the artifact id / file sha256 of a given one
    artifact: Artifact | None
    reused: bool
    facts: dict[str, Any]


def read_calibration(path: str) -> CalibrationText:
    from kogata.methods._shared.texts import read_texts

    p = Path(path).expanduser()
    if not p.exists():
        raise KogataError(f"calibration {path} does not exist", "give a text/JSONL file or a folder of your documents")
    records = [t for t in read_texts([p]) if t.strip()]
    text = "\n\n".join(t.strip() for t in records)
    if not text:
        raise KogataError(f"calibration {path} holds no text", "give documents with text in them (plain text, Markdown, JSONL)")
    return CalibrationText(path=p, text=text, fingerprint=data_fingerprint([p]) or "", records=len(records))


def count_tokens(gguf_path: Path, text: str) -> int:
    """Tokens of ``text`` with the model's own llama.cpp tokenizer, BOS added, special-token text not parsed
    (as ``llama-imatrix`` tokenizes its input)."""
    import llama_cpp

    from kogata.methods.quantize.method import c_stderr_to_log

    with c_stderr_to_log():  # llama.cpp warns about the context a vocab-only load does not need
        llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))
    finally:
        llm.close()


def plan_chunks(n_tokens: int, chunks: int | None, ctx_len: int, calib: CalibrationText, model: str) -> int:
    """How many chunks of ``ctx_len`` tokens the imatrix is computed over; an error when the text is too short
    for the requested chunks (or for llama-imatrix's minimum of two), saying how much is needed."""
    wanted = max(MIN_CHUNKS, chunks or 0)
    needed = wanted * ctx_len
    if n_tokens < needed:
        per_token = len(calib.text.encode("utf-8")) / max(1, n_tokens)
        more_kib = (needed - n_tokens) * per_token / 1024
        what = f"imatrix_chunks={chunks} × imatrix_ctx={ctx_len}" if chunks else f"at least {MIN_CHUNKS} chunks of imatrix_ctx={ctx_len}"
        raise KogataError(
            f"calibration {calib.path} is too short: {n_tokens} tokens with {model}'s tokenizer, but {what} needs {needed}",
            f"add about {needed - n_tokens} tokens (~{more_kib:.1f} KiB of similar text) or lower imatrix_chunks / imatrix_ctx",
        )
    return min(chunks, n_tokens // ctx_len) if chunks else n_tokens // ctx_len


def imatrix_entries(path: Path, ref: str) -> dict[str, int]:
    """Weight name → row width of every entry of a GGUF imatrix file (its ``<name>.in_sum2`` tensors)."""
    from gguf import GGUFReader

    try:
        tensors = GGUFReader(path).tensors
    except (ValueError, OSError) as exc:
        raise KogataError(f"imatrix {ref} is not a GGUF imatrix file ({exc})",
                          "use an imatrix artifact, or a file llama-imatrix wrote with --output-format gguf") from None
    entries = {t.name[: -len(".in_sum2")]: int(t.shape[0]) for t in tensors if t.name.endswith(".in_sum2")}
    if not entries:
        raise KogataError(f"imatrix {ref} holds no importance entries", "compute one with calibration=FILE")
    return entries


def check_imatrix_fits(path: Path, ref: str, shapes: dict[str, tuple[int, ...]], model: str) -> dict[str, int]:
    """Every entry of the imatrix must name a tensor of the model with the same row width; else it was made for
    another model. Returns the entries."""
    entries = imatrix_entries(path, ref)
    missing = [n for n in entries if n not in shapes]
    wrong = [n for n in entries if n in shapes and shapes[n][0] != entries[n]]
    if missing or wrong:
        example = (f"{wrong[0]} is {entries[wrong[0]]} wide in the imatrix but {shapes[wrong[0]][0]} in the model" if wrong
                   else f"{missing[0]} is not a tensor of the model")
        raise KogataError(
            f"imatrix {ref} was made for another model: {len(missing) + len(wrong)} of its {len(entries)} entries do not "
            f"match {model} ({example})",
            "compute one for this model with calibration=FILE (your documents)",
        )
    return entries


def given_imatrix(ref: str, ctx: MethodContext, shapes: dict[str, tuple[int, ...]], model: str) -> ImatrixChoice:
    """``imatrix=REF``: an imatrix artifact in the store (name or id) or a GGUF imatrix file, checked against the model."""
    art = ctx.store.find(ref)
    if art is not None:
        if art.kind != IMATRIX_KIND:
            raise KogataError(f"imatrix {ref} is a {art.kind} artifact, not an importance matrix",
                              "give an imatrix artifact (`kogata models list`) or compute one with calibration=FILE")
        path, fingerprint = art.gguf_path, art.id
        facts = dict(art.manifest.get(IMATRIX_KIND) or {})
    else:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise KogataError(f"imatrix {ref} is neither an artifact nor a file", "see `kogata models list`, or give the path of a GGUF imatrix")
        fingerprint, facts = sha256_file(path)[:16], {"file": str(path)}
    entries = check_imatrix_fits(path, ref, shapes, model)
    return ImatrixChoice(path=path, fingerprint=fingerprint, artifact=art, reused=True, facts={**facts, "entries": len(entries)})


def calibrated_imatrix(model: Artifact, cfg: Any, ctx: MethodContext, calib: CalibrationText, n_tokens: int,
                       n_chunks: int) -> ImatrixChoice:
    """The imatrix of ``model`` on ``calib``: the stored one made from the same data, context and chunk count,
    or a new artifact computed with ``llama-imatrix`` (checks on the text are done by the caller)."""
    key = {"model": model.id, "data_fingerprint": calib.fingerprint, "ctx": cfg.imatrix_ctx, "chunks": n_chunks}
    if ctx.allow_reuse:
        for child in ctx.store.children(model.id):
            facts = child.manifest.get(IMATRIX_KIND) or {}
            if child.kind == IMATRIX_KIND and all(facts.get(k) == v for k, v in key.items()) and not child.verify():
                ctx.log(f"quantize: reusing importance matrix {child.name} ({child.id}) made from the same model and data")
                return ImatrixChoice(child.gguf_path, calib.fingerprint, child, True, facts)
    started = time.time()
    threads = settings.get_threads()
    advance = ctx.task(f"imatrix ({n_chunks} chunks of {cfg.imatrix_ctx} tokens)", 1)
    with ctx.store.stage() as st, tempfile.TemporaryDirectory(prefix="kogata-calibration-") as tmp:
        text_file = Path(tmp) / f"calibration-{calib.fingerprint}.txt"  # the name llama.cpp records in the file
        text_file.write_text(calib.text, encoding="utf-8")
        out = st.dir / IMATRIX_FILE
        args = ["-m", str(model.gguf_path), "-f", str(text_file), "-o", str(out), "--output-format", "gguf",
                "-c", str(cfg.imatrix_ctx), "-b", str(cfg.imatrix_ctx), "--chunks", str(n_chunks), "-t", str(threads), "--no-ppl"]
        llamacpp_tools.run_tool("llama-imatrix", args, what=f"importance matrix of {model.name}",
                                hint="check that the model runs under the llamacpp runtime; try a smaller imatrix_ctx")
        advance(1)
        entries = imatrix_entries(out, str(out))
        facts = {**key, "tokens": n_tokens, "entries": len(entries), "calibration": str(calib.path), "records": calib.records}
        step = LineageStep(
            method="imatrix",
            config={"calibration": str(calib.path), "imatrix_ctx": cfg.imatrix_ctx, "imatrix_chunks": cfg.imatrix_chunks},
            seed=ctx.seed,
            data_fingerprint=calib.fingerprint,
            duration_s=time.time() - started,
            metrics={"tokens": n_tokens, "chunks": n_chunks, "entries": len(entries), "threads": threads},
            tool_versions={**python_tool_versions(), **llamacpp_tools.tool_versions()},
        )
        art = st.commit(format="gguf", kind=IMATRIX_KIND, name=_free_name(ctx, f"{_base_name(model)}.imatrix"), parent=model,
                        step=step, model_file=IMATRIX_FILE, params=0, architecture=model.architecture, extra={IMATRIX_KIND: facts})
    ctx.log(f"quantize: importance matrix {art.name} ({art.id}) from {n_tokens} tokens, {n_chunks} chunks")
    return ImatrixChoice(art.gguf_path, calib.fingerprint, art, False, facts)


def _free_name(ctx: MethodContext, default: str) -> str:
    """``default`` or ``default-2`` … (the user's ``--out`` names the quantized model, not its imatrix)."""
    name, n = default, 1
    while ctx.store.name_taken(name):
        n += 1
        name = f"{default}-{n}"
    return name


def _base_name(artifact: Artifact) -> str:
    return artifact.name[: -len(".gguf")] if artifact.name.endswith(".gguf") else artifact.name
