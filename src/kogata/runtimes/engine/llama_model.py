"""A GGUF model and one multi-sequence context on llama-cpp-python's low-level (ctypes) API.

:class:`LlamaModel` owns the ``llama_model`` (tokenizer, token pieces, chat template) and the one
``llama_context`` the engine decodes with: ``n_seq_max`` sequences, each with ``n_ctx_seq`` cells of KV cache
(``kv_unified=False``, what ``llama-server -np N`` uses: attention of a sequence only looks at its own cells),
or one shared pool of ``n_seq_max * n_ctx_seq`` cells (``kv_unified=True``). Flash attention is off by default,
as in the ``llamacpp`` runtime (``llama_cpp.Llama``'s default), so both compute the same numbers.

The context is not thread-safe: only the engine thread may call :meth:`decode` and the ``seq_*`` methods.
Tokenizing (a read-only use of the vocabulary) is safe from any thread.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.runtimes.scoring import KV_TYPES

_backend_lock = threading.Lock()
_backend_ready = False


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise KogataError("the llama.cpp serving engine needs llama-cpp-python", "pip install llama-cpp-python==0.3.36") from None
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load chatter off stderr
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


class LlamaModel:
    """A loaded GGUF (weights + vocabulary) plus the engine's decode context and token batch."""

    def __init__(self, path: Path):
        lc = self.lc = _llama_cpp()
        self.path = Path(path)
        self.model = lc.llama_model_load_from_file(str(path).encode("utf-8"), lc.llama_model_default_params())
        if not self.model:
            raise KogataError(f"llama.cpp could not load {path}", "check that the file is a complete GGUF model")
        self.ctx = None
        self.batch = None
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lc.llama_model_n_ctx_train(self.model)
        self.bos = lc.llama_vocab_bos(self.vocab)
        self.eos = lc.llama_vocab_eos(self.vocab)
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self._pieces: dict[int, bytes] = {}

    def open_context(self, *, n_ctx_seq: int, n_seq: int, n_batch: int, threads: int, kv_type: str = "f16",
                     kv_unified: bool = False, flash_attn: bool = False) -> None:
        """Create the decode context: ``n_seq`` sequences of ``n_ctx_seq`` KV cells each, one token batch."""
        lc = self.lc
        if kv_type not in KV_TYPES:
            raise KogataError(f"unknown kv_type {kv_type!r}", f"use one of: {', '.join(KV_TYPES)}")
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_seq
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = kv_unified
        params.type_k = KV_TYPES[kv_type]
        params.type_v = KV_TYPES[kv_type]
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        params.embeddings = False
        self.ctx = lc.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise KogataError(
                f"llama.cpp could not create a context of {n_seq} x {n_ctx_seq} tokens for {self.path.name}",
                "lower --ctx or --parallel (the KV cache may not fit in memory)",
            )
        self.memory = lc.llama_get_memory(self.ctx)
        self.n_seq = lc.llama_n_seq_max(self.ctx)
        self.n_ctx_seq = lc.llama_n_ctx_seq(self.ctx)
        self.n_batch = n_batch
        self.batch = lc.llama_batch_init(n_batch, 0, 1)
        self.batch_size = 0

    # ------------------------------------------------------------------ vocabulary (any thread)
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self.lc.llama_token * cap)()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (self.lc.llama_token * cap)()
            n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
            if n < 0:
                raise KogataError("llama.cpp could not tokenize the prompt", "check that the text is valid UTF-8")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for in output text (special tokens render as nothing, as in
        ``llama_cpp.Llama.detokenize``). Cached; called from the engine thread."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._piece(token, special=False)
            self._pieces[token] = cached
        return cached

    def _piece(self, token: int, *, special: bool) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self.lc.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def token_text(self, token: int) -> str:
        """A token's text with special tokens spelled out (``<|im_end|>``), for chat templates."""
        if token < 0:
            return ""
        return self._piece(token, special=True).decode("utf-8", errors="ignore")

    def is_eog(self, token: int) -> bool:
        return bool(self.lc.llama_vocab_is_eog(self.vocab, token))

    def chat_template(self) -> str | None:
        raw = self.lc.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8") if raw else None

    # ------------------------------------------------------------------ decoding (engine thread only)
    def batch_clear(self) -> None:
        self.batch_size = 0

    def batch_add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (for :meth:`logits_row`)."""
        b, i = self.batch, self.batch_size
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
        self.batch_size = i + 1
        return i

    def decode(self) -> None:
        self.batch.n_tokens = self.batch_size
        rc = self.lc.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {self.batch_size} tokens")

    def logits_row(self, index: int) -> np.ndarray:
        """The logits of batch position ``index`` (which was added with ``logits=True``), as a float32 view."""
        ptr = self.lc.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def logits_rows(self, n_rows: int) -> np.ndarray:
        """All output rows of the last decode, in batch order (float32 view, ``n_rows x n_vocab``)."""
        return np.ctypeslib.as_array(self.lc.llama_get_logits(self.ctx), shape=(n_rows, self.n_vocab))

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        """Drop sequence ``seq_id``'s KV cells at positions [p0, p1) (all of them by default)."""
        return bool(self.lc.llama_memory_seq_rm(self.memory, seq_id, p0, p1))

    def seq_pos_min(self, seq_id: int) -> int:
        """The smallest position sequence ``seq_id`` still holds in the KV cache (-1 when it holds none; above 0
        when a sliding-window cache has already dropped the start)."""
        return int(self.lc.llama_memory_seq_pos_min(self.memory, seq_id))

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        lc = self.lc
        if self.batch is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            lc.llama_model_free(self.model)
            self.model = None
