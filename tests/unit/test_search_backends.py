"""The backend selection (kogata.search.backends): which locations are accepted, and the names index.py still exports."""

from __future__ import annotations

import pytest

from kogata.core.errors import KogataError
from kogata.search import backends


def test_locations():
    assert backends.check_backend(None) == backends.check_backend("embedded") == "embedded"
    url = "postgresql://kogata@127.0.0.1:5432/search"
    assert backends.check_backend(url) == url
    with pytest.raises(KogataError, match="unknown search backend 'mysql://x'"):
        backends.check_backend("mysql://x")
    assert backends.recorded_location("embedded", need_pgvector=True) == "embedded"  # no server to check
    assert backends.upsert_batch("embedded", 0) == 1 and backends.upsert_batch("embedded", 5000) == 5000
    assert backends.upsert_batch(url, 5000) == backends.PG_UPSERT_BATCH


def test_nothing_to_drop_for_embedded_or_unreadable_versions():
    said = []
    backends.drop_backend(object(), None, said.append)
    backends.drop_backend(object(), {"backend": "embedded"}, said.append)
    assert said == []


def test_index_module_keeps_its_names():
    from kogata.search import index

    assert index.check_backend is backends.check_backend and index.open_backend is backends.open_backend
    assert index.EMBEDDED == "embedded" and index.PG_UPSERT_BATCH == backends.PG_UPSERT_BATCH
