"""Document search (社内文書検索): ingest → chunk → index (a store artifact) → retrieve (BM25, dense, hybrid) → answer.

Modules, in the order data flows: :mod:`~kogata.search.ingest` (read and normalise documents),
:mod:`~kogata.search.chunk` (Japanese-aware chunks), :mod:`~kogata.search.tokenize` (BM25 tokenizers),
:mod:`~kogata.search.vectors` (the embedder and the vector cache), :mod:`~kogata.search.backend` (storage and
the two primitive queries), :mod:`~kogata.search.index` (index artifacts: build, update, open),
:mod:`~kogata.search.retrieve` (ranking and fusion), :mod:`~kogata.search.answer` (grounded answers with
citations), :mod:`~kogata.search.metrics`, :mod:`~kogata.search.eval_task` (the ``retrieval`` task type) and
:mod:`~kogata.search.rag_task` (``rag_qa``: retrieve, answer, score with citations).

Importing this package registers the ``retrieval`` task type (and its metrics) with :mod:`kogata.eval`; eval also
finds both types by name (``kogata.eval.tasks.PLUGIN_TASK_TYPES``) without importing search itself.
"""

from kogata.search import eval_task  # noqa: F401  (registers the retrieval task type)
