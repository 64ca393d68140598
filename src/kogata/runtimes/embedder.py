"""The ``embedder`` runtime: sentence embeddings from a sentence-transformers folder (``minilm-l6`` and alike).

Runs artifacts of kind ``embedder`` in the ``hf`` format laid out as sentence-transformers saves a model:
``modules.json`` naming the modules (Transformer, Pooling, optionally Normalize), the pooling settings in
their subfolder (``1_Pooling/config.json``), the transformer's ``config.json``, tokenizer and
``*.safetensors`` weights. The ``sentence-transformers`` library loads it with ``trust_remote_code=False``,
``local_files_only=True`` and ``use_safetensors=True`` (pickle weights are refused), on CPU with the thread
count of :func:`kogata.core.settings.get_threads`.

``embed(texts)`` returns a ``float32`` array of shape ``(len(texts), dim)`` with L2-normalised rows (cosine
similarity = dot product), encoded in batches of ``batch_size``; texts longer than ``max_seq_length`` tokens
are truncated, as sentence-transformers does. Options: ``batch_size`` (32), ``max_seq_length`` (the model's
own, e.g. 256 for all-MiniLM-L6-v2).

Concurrency: one call at a time per instance — the fast tokenizer can fail ("Already borrowed") when several
threads use it at once — so callers that share an instance hold ``runtime.lock`` (the runtime does not lock
itself); open one instance per worker for parallel embedding.
"""

from __future__ import annotations

import gc
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.core.settings import get_threads
from kogata.runtimes.registry import register_runtime


@register_runtime("embedder")
class EmbedderRuntime:
    name = "embedder"
    kind = "embedder"
    formats = ("hf",)
    options = ("batch_size", "max_seq_length")

    @staticmethod
    def refuses(artifact: Any) -> str | None:
        """Why this runtime cannot run ``artifact`` (None when it can): only sentence-transformers folders."""
        path = getattr(artifact, "path", None)
        ok = path is not None and (Path(path) / "modules.json").is_file()
        return None if ok else "not a sentence-transformers folder (no modules.json)"

    def __init__(self, artifact: Any, *, batch_size: int = 32, max_seq_length: int | None = None):
        folder = Path(artifact.path)
        if not (folder / "modules.json").is_file():
            raise KogataError(
                f"{artifact.name} ({folder}) is not a sentence-transformers folder (no modules.json)",
                "import a folder saved by sentence-transformers (modules.json + pooling config), e.g. `kogata models pull minilm-l6`",
            )
        if not any(folder.glob("*.safetensors")):
            raise KogataError(f"{artifact.name} has no *.safetensors weights", "re-import the model with safetensors weights")
        if batch_size < 1:
            raise KogataError(f"embedder runtime: batch_size must be at least 1, got {batch_size}", "pass batch_size=1 or more")
        import torch
        from sentence_transformers import SentenceTransformer

        self.lock = threading.Lock()  # callers hold it: one call at a time per instance (module docstring)
        self.threads = get_threads()
        torch.set_num_threads(self.threads)
        started = time.perf_counter()
        self.model = SentenceTransformer(
            str(folder),
            device="cpu",
            trust_remote_code=False,
            local_files_only=True,
            model_kwargs={"use_safetensors": True},
        )
        self.model.eval()
        if max_seq_length is not None:
            if max_seq_length < 1:
                raise KogataError(f"embedder runtime: max_seq_length must be at least 1, got {max_seq_length}", "pass e.g. max_seq_length=256")
            self.model.max_seq_length = int(max_seq_length)
        self.load_s = time.perf_counter() - started
        self.batch_size = int(batch_size)
        self.artifact_id = getattr(artifact, "id", str(folder))
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row per text (an empty list gives shape ``(0, dim)``)."""
        if isinstance(texts, str):
            raise KogataError("embed() takes a list of texts, got one string", "wrap it: embed([text])")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def tokenize(self, text: str) -> list[int]:
        """Token ids as the model sees them (with its special tokens, truncated to ``max_seq_length``)."""
        max_len = int(self.model.max_seq_length)
        return list(self.model.tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"])

    def info(self) -> dict[str, Any]:
        import torch

        return {
            "runtime": self.name,
            "artifact": self.artifact_id,
            "dim": self.dim,
            "max_seq_length": int(self.model.max_seq_length),
            "batch_size": self.batch_size,
            "threads": self.threads,
            "load_s": round(self.load_s, 3),
            "sentence_transformers": metadata.version("sentence-transformers"),
            "torch": torch.__version__,
            "transformers": metadata.version("transformers"),
        }

    def close(self) -> None:
        self.model = None
        gc.collect()
