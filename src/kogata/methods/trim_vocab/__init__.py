"""Vocabulary trimming: keep the tokens a corpus needs, closed under BPE merges (``trim-vocab``)."""

import kogata.methods.trim_vocab.method  # noqa: F401  (registers trim-vocab)
