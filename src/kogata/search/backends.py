"""Where an index's chunks live: the backend selection for :mod:`kogata.search.index`.

An index version's ``backend`` is ``'embedded'`` (the chunks, tokens and vectors are files in its artifact:
:class:`~kogata.search.backend.EmbeddedBackend`, SQLite + ``vectors.npy``) or a PostgreSQL URL (``--backend``, or
``$KOGATA_SEARCH_BACKEND`` as its default): :class:`~kogata.search.backend_pg.PostgresBackend`, one pair of tables
per version, the URL recorded without its password. This module checks a location, opens the backend an index
version names, creates the empty one a new version is written into, and drops the tables of a version that goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from kogata.core.errors import KogataError
from kogata.search.backend import EmbeddedBackend, SearchBackend

EMBEDDED = "embedded"
PG_UPSERT_BATCH = 2000  # chunks per COPY into the PostgreSQL backend


def check_backend(location: str | None) -> str:
    """``'embedded'`` (files in the artifact) or a PostgreSQL URL, as given; KogataError for anything else."""
    from kogata.search.backend_pg import is_postgres_url

    location = location or EMBEDDED
    if location == EMBEDDED or is_postgres_url(location):
        return location
    raise KogataError(f"unknown search backend {location!r}", "use --backend embedded (files in the store) or a URL like postgresql://user@host:5432/db")


def recorded_location(location: str, *, need_pgvector: bool) -> str:
    """What an index's ``index.json`` records for ``location`` (a URL without its password). A PostgreSQL server
    that cannot be reached (or has no pgvector when vectors are needed) fails here, before any embedding."""
    if location == EMBEDDED:
        return EMBEDDED
    from kogata.search.backend_pg import check_server, public_url

    check_server(location, need_pgvector=need_pgvector)
    return public_url(location)


def upsert_batch(location: str, n_chunks: int) -> int:
    """Chunks per ``upsert`` into a new backend: all at once in memory, in batches into PostgreSQL."""
    return PG_UPSERT_BATCH if location != EMBEDDED else max(n_chunks, 1)


def _dim(meta: dict[str, Any]) -> int:
    return int((meta.get("embedder") or {}).get("dim") or 0)


def open_backend(artifact: Any, meta: dict[str, Any]) -> SearchBackend:
    """The backend holding an index version's chunks (indexes from before backends were recorded are embedded)."""
    location = meta.get("backend", EMBEDDED)
    if location == EMBEDDED:
        return EmbeddedBackend.load(artifact.path, _dim(meta))
    from kogata.search.backend_pg import PostgresBackend

    return PostgresBackend(location, meta["backend_table"], _dim(meta))


def drop_backend(artifact: Any, meta: dict[str, Any] | None, log: Callable[[str], None]) -> None:
    """Remove what an index version keeps outside its artifact (the PostgreSQL tables) before the artifact goes;
    ``meta`` None (unreadable ``index.json``) or an embedded version: nothing to do."""
    if meta is None or meta.get("backend", EMBEDDED) == EMBEDDED:
        return
    from kogata.search.backend_pg import PostgresBackend

    try:
        backend = PostgresBackend(meta["backend"], meta["backend_table"], _dim(meta))
    except KogataError as exc:
        log(f"could not drop the tables of {artifact.name}: {exc}")
        return
    try:
        backend.drop()
    finally:
        backend.close()


@contextlib.contextmanager
def new_backend(location: str, name: str, version: int, dim: int) -> Iterator[Any]:
    """An empty backend for a new version; a PostgreSQL one drops its tables again unless the block completes
    (and the artifact naming them is committed)."""
    if location == EMBEDDED:
        yield EmbeddedBackend(dim)
        return
    from kogata.search.backend_pg import PostgresBackend, table_for

    backend = PostgresBackend(location, table_for(name, version), dim, create=True)
    try:
        yield backend
    except BaseException:
        with contextlib.suppress(Exception):  # the server may be what failed; the first error is the one to report
            backend.drop()
        raise
    finally:
        backend.close()
