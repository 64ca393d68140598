"""The PostgreSQL + pgvector search backend: chunks, BM25 postings and vectors in tables, queried in SQL.

Selected by a URL (``kogata index build DOCS --name kb --backend postgresql://kogata@db:5432/search``). Each
index version gets its own two tables in schema ``kogata_search`` — ``<name>_v<N>_<random>`` (one row per chunk:
the chunk, its BM25 tokens and length, its ``vector(dim)``) and ``…_terms`` (the postings: term, chunk, the
term's BM25 weight in the chunk) — written completely before the artifact that names them is committed, so an
open index is never changed underneath a reader and a failed build leaves the previous version as it was. The index
artifact records the URL without its password; at open the password comes from ``$KOGATA_SEARCH_BACKEND`` (when
it names the same server), ``$PGPASSWORD`` or ``~/.pgpass``, as libpq does.

Same rankings as :class:`~kogata.search.backend.EmbeddedBackend`, by construction:

* **Lexical: BM25 in SQL**, the formula bm25s computes for the parameters in ``backend.py`` (``BM25_METHOD``
  lucene: ``idf = ln(1 + (N − df + ½)/(df + ½))``, term weight ``tf / (tf + k1·(1 − b + b·dl/avgdl))``, a query
  term counted once per occurrence, unknown terms ignored, an empty chunk of length 1). Like bm25s, the weight of
  every (term, chunk) is computed once after writing (in SQL, over the stored tokens) and a query sums the
  weights of its terms' postings. SQL rather than bm25s over tokens loaded into each process: every replica of
  a scaled-out service then queries the same postings, with no per-process copy of the corpus to load (minutes
  and gigabytes at millions of chunks) or keep fresh; the price is latency (a query reads all postings of its
  terms: see benchmarks/search_pg.py). Scores agree with bm25s to float32 rounding.
* **Dense: exact inner product** (``ORDER BY embedding <#> q, row``): the embedded backend's score is
  ``vectors @ q``, the cosine for the unit-length vectors the embedders return; ``<#>`` is that same quantity
  (``<=>`` would divide by the norms again). ``?hnsw=on`` in the URL adds an HNSW index (``vector_ip_ops``) and
  queries through it: approximate, much faster at 100k+ chunks; exact is the default.
* Rows are 0…n−1 in insertion order and a delete closes the gap, as in the embedded backend, so ties (broken by
  row) break the same way. A BM25-only index (``dim`` 0) needs no pgvector.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import numpy as np

from kogata.core.errors import KogataError
from kogata.search.backend import BM25_B, BM25_K1, BM25_METHOD
from kogata.search.chunk import Chunk

SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
SCHEMA = "kogata_search"
URL_ENV = "KOGATA_SEARCH_BACKEND"
CONNECT_TIMEOUT_S = 5
HNSW_EF_SEARCH = 100  # candidates HNSW keeps per query (raised to k when k is larger)
_CHUNK_CACHE = 4096
_TRUE = {"1", "on", "true", "yes"}

if BM25_METHOD != "lucene":  # a change in backend.py must come with the same change here
    raise ImportError(f"backend_pg computes BM25's lucene variant, backend.py asks for {BM25_METHOD}")

# The postings with each term's BM25 weight in each chunk, computed once for the whole table as bm25s does at
# indexing (``idf · tf / (tf + k1 (1 − b + b·dl/avgdl))``, float32); rebuilt after writes, before the next query
POSTINGS_SQL = (
    "INSERT INTO {schema}.{terms} (term, cid, weight) "
    "SELECT term, cid, (ln(1 + (%(n)s - df + 0.5) / (df + 0.5)) * tf / (tf + %(k1)s * (1 - %(b)s + %(b)s * dl / %(avgdl)s)))::real "
    "FROM (SELECT term, cid, tf, dl, (count(*) OVER (PARTITION BY term))::float8 AS df "
    "      FROM (SELECT t.term, c.cid, count(*)::float8 AS tf, c.dl FROM {schema}.{chunks} c, unnest(c.tokens) AS t(term) "
    "            GROUP BY t.term, c.cid, c.dl) AS tf) AS df"
)
# BM25 for one query: the sum of the query terms' weights (a term once per occurrence in the query, as bm25s does)
# through the (term, cid) index, the top k chunks by score (ties by cid, which orders like row), then their rows
LEXICAL_SQL = (
    "WITH q AS (SELECT term, count(*)::float8 AS qtf FROM unnest(%(terms)s::text[]) AS term GROUP BY term), "
    "s AS (SELECT p.cid, sum(q.qtf * p.weight) AS score FROM q JOIN {schema}.{terms} p USING (term) "
    "      GROUP BY p.cid ORDER BY score DESC, p.cid LIMIT %(k)s) "
    "SELECT c.row, s.score FROM s JOIN {schema}.{chunks} c USING (cid) ORDER BY s.score DESC, c.row"
)


# ---- URLs ---------------------------------------------------------------------------------------------
def is_postgres_url(location: str) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0].lower() in SCHEMES and "://" in location


def _split(url: str) -> tuple[str, str, dict[str, str]]:
    """(URL for libpq without kogata's own options, URL to record (no password), kogata options)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = {k: query.pop(k) for k in ("hnsw",) if k in query}
    libpq = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query, quote_via=quote), ""))
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        netloc[0] = netloc[0].split(":", 1)[0]
    recorded_query = {k: v for k, v in query.items() if k != "password"} | options
    recorded = urlunsplit(("postgresql", "@".join(netloc), parts.path, urlencode(recorded_query, quote_via=quote), ""))
    return libpq, recorded, options


def public_url(url: str) -> str:
    """``url`` without its password (what an index artifact records)."""
    return _split(url)[1]


def masked_url(url: str) -> str:
    """``url`` for messages: a password shown as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc and ":" in netloc.rsplit("@", 1)[0]:
        user = netloc.rsplit("@", 1)[0].split(":", 1)[0]
        netloc = f"{user}:***@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(f"{k}=***" if k == "password" else f"{k}={v}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _with_env_password(url: str) -> str:
    """``url``, or ``$KOGATA_SEARCH_BACKEND`` when that names the same server with a password."""
    env = os.environ.get(URL_ENV, "")
    if is_postgres_url(env) and public_url(env) == public_url(url):
        return env
    return url


def table_for(name: str, version: int) -> str:
    """A fresh table name for version ``version`` of index ``name`` (random suffix: stores may share a database)."""
    safe = name if len(name) <= 40 else f"{name[:31]}-{secrets.token_hex(4)}"
    return f"{safe}_v{int(version)}_{secrets.token_hex(4)}"


# ---- the backend ---------------------------------------------------------------------------------------
class PostgresBackend:
    """One index version's tables in one PostgreSQL database; BM25 and vector search in SQL."""

    def __init__(self, url: str, table: str, dim: int = 0, *, create: bool = False):
        self._libpq, self.url, options = _split(_with_env_password(url))
        self._shown = masked_url(url)  # for messages
        self.table, self.dim = table, int(dim)
        self.hnsw = options.get("hnsw", "").lower() in _TRUE
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,56}", table):
            raise KogataError(f"search table name {table!r} is not valid", "rebuild the index with `kogata index build`")
        self._lock = threading.RLock()  # one connection: one statement at a time, transactions not interleaved
        self._conn = _connect(self._libpq, url)
        self._ef_search = 0
        self._stats: tuple[int, float] | None = None  # (chunks, mean length) for BM25
        self._postings_fresh = True  # a committed version's postings are complete; a write here makes them stale
        self._chunks: dict[int, Chunk] = {}
        try:
            if self.dim:
                _ensure_pgvector(self._conn, url)
            if create:
                self._create()
            elif not self._exists():
                raise KogataError(f"table {SCHEMA}.{self.table} is missing in {masked_url(url)}",
                                  "the index was removed from the database; rebuild it with `kogata index build`")  # fmt: skip
        except BaseException:
            self._conn.close()
            raise

    # ---- the connection ---------------------------------------------------------------------------
    def _read(self, query: Any, params: Any = None) -> list[tuple]:
        """Rows of a read-only statement; a dropped connection (server restart) is re-opened once."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._conn.execute(query, params).fetchall()
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not self._conn.closed and not self._conn.broken:
                        raise KogataError(f"PostgreSQL at {self._shown} stopped answering ({_first_line(exc)})",
                                          "check the server; searches resume when it is back") from None  # fmt: skip
                    self._reconnect()
        raise AssertionError("unreachable")

    def _reconnect(self) -> None:
        self._conn.close()
        self._conn = _connect(self._libpq, self._shown)
        self._ef_search = 0
        if self.dim:
            _ensure_pgvector(self._conn, self._shown)

    # ---- setup ------------------------------------------------------------------------------------
    def _sql(self, text: str):
        from psycopg import sql

        return sql.SQL(text).format(schema=sql.Identifier(SCHEMA), chunks=sql.Identifier(self.table),
                                    terms=sql.Identifier(f"{self.table}_terms"), hnsw=sql.Identifier(f"{self.table}_hnsw"))  # fmt: skip

    def _exists(self) -> bool:
        return self._read("SELECT to_regclass(%s)", [f'{SCHEMA}."{self.table}"'])[0][0] is not None

    def _create(self) -> None:
        vector = f", embedding vector({self.dim}) NOT NULL" if self.dim else ""
        with self._lock, self._conn.transaction():
            self._conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
            self._conn.execute(self._sql(
                "CREATE TABLE {schema}.{chunks} (cid bigint PRIMARY KEY, row integer NOT NULL, chunk_id text UNIQUE NOT NULL, "
                "doc_id text NOT NULL, source text NOT NULL, title text NOT NULL, position integer NOT NULL, start integer NOT NULL, "
                '"end" integer NOT NULL, text text NOT NULL, hash text NOT NULL, tokens text[] NOT NULL, dl integer NOT NULL' + vector + ")"))  # fmt: skip
            self._conn.execute(self._sql("CREATE INDEX ON {schema}.{chunks} (row)"))
            if self.dim:  # keep vectors in the row (the text and tokens go to TOAST first): a scan reads no TOAST
                self._conn.execute(self._sql("ALTER TABLE {schema}.{chunks} ALTER COLUMN embedding SET STORAGE MAIN"))
            self._conn.execute(self._sql("CREATE TABLE {schema}.{terms} (term text NOT NULL, cid bigint NOT NULL, weight real NOT NULL, "
                                         "PRIMARY KEY (term, cid) INCLUDE (weight))"))  # fmt: skip

    def drop(self) -> None:
        """Remove this version's tables (the index artifact that named them is gone)."""
        with self._lock, self._conn.transaction():
            self._conn.execute(self._sql("DROP TABLE IF EXISTS {schema}.{terms}"))
            self._conn.execute(self._sql("DROP TABLE IF EXISTS {schema}.{chunks}"))
        self._forget()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def finish_build(self) -> None:
        """After the bulk load: the HNSW index (``?hnsw=on``), fresh planner statistics and visibility map (index-only
        scans of the postings)."""
        self._refresh_postings()
        with self._lock:
            if self.dim and self.hnsw:
                self._conn.execute(self._sql("CREATE INDEX IF NOT EXISTS {hnsw} ON {schema}.{chunks} USING hnsw (embedding vector_ip_ops)"))
            self._conn.execute(self._sql("VACUUM (ANALYZE) {schema}.{chunks}"))
            self._conn.execute(self._sql("VACUUM (ANALYZE) {schema}.{terms}"))

    def _forget(self) -> None:
        self._stats = None
        self._chunks.clear()
        self._postings_fresh = False

    def _refresh_postings(self) -> None:
        """(Re)compute the postings and their weights when a write made them stale (as bm25s re-indexes)."""
        if self._postings_fresh:
            return
        n, avgdl = self._corpus_stats()
        with self._lock, self._conn.transaction():
            self._conn.execute(self._sql("TRUNCATE {schema}.{terms}"))
            if n:
                self._conn.execute(self._sql(POSTINGS_SQL), {"n": float(n), "k1": BM25_K1, "b": BM25_B, "avgdl": avgdl})
        self._postings_fresh = True

    def __len__(self) -> int:
        return self._corpus_stats()[0]

    # ---- writes -----------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], tokens: Sequence[list[str]], vectors: np.ndarray | None) -> None:
        if len(tokens) != len(chunks) or (self.dim and (vectors is None or len(vectors) != len(chunks))):
            raise ValueError("upsert needs one token list (and one vector, with an embedder) per chunk")
        if not chunks:
            return
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), self.dim) if self.dim else None
        with self._lock, self._conn.transaction():
            self._delete([c.chunk_id for c in chunks])
            start_row, start_cid = self._conn.execute(self._sql("SELECT count(*), coalesce(max(cid) + 1, 0) FROM {schema}.{chunks}")).fetchone()
            columns = "cid, row, chunk_id, doc_id, source, title, position, start, \"end\", text, hash, tokens, dl" + (", embedding" if self.dim else "")
            with self._conn.cursor().copy(self._sql(f"COPY {{schema}}.{{chunks}} ({columns}) FROM STDIN")) as copy:
                for i, (c, toks) in enumerate(zip(chunks, tokens)):
                    row = [start_cid + i, start_row + i, c.chunk_id, c.doc_id, c.source, c.title, c.position, c.start, c.end, c.text,
                           c.hash, list(toks), max(len(toks), 1)]  # fmt: skip
                    copy.write_row(row + [vecs[i]] if self.dim else row)
        self._forget()

    def delete(self, chunk_ids: Iterable[str]) -> None:
        with self._lock, self._conn.transaction():
            self._delete(list(chunk_ids))
        self._forget()

    def _delete(self, chunk_ids: list[str]) -> None:
        """Remove ``chunk_ids`` and renumber the rows after them (rows stay 0…n−1 in insertion order)."""
        if not chunk_ids:
            return
        gone = self._conn.execute(self._sql("DELETE FROM {schema}.{chunks} WHERE chunk_id = ANY(%s) RETURNING row"), [chunk_ids]).fetchall()
        if not gone:
            return
        first = min(row for (row,) in gone)
        self._conn.execute(self._sql(
            "UPDATE {schema}.{chunks} c SET row = s.new FROM (SELECT cid, row_number() OVER (ORDER BY cid) - 1 AS new "
            "FROM {schema}.{chunks}) s WHERE c.cid = s.cid AND c.row > %s AND c.row <> s.new"), [first])  # fmt: skip

    # ---- queries ----------------------------------------------------------------------------------
    def _corpus_stats(self) -> tuple[int, float]:
        if self._stats is None:
            n, mean = self._read(self._sql("SELECT count(*), avg(dl)::float8 FROM {schema}.{chunks}"))[0]
            self._stats = (int(n), float(mean or 0.0))
        return self._stats

    def lexical(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        if not len(self) or not query_tokens or k <= 0:
            return []
        self._refresh_postings()
        rows = self._read(self._sql(LEXICAL_SQL), {"terms": list(query_tokens), "k": int(k)})
        return [(int(r), float(s)) for r, s in rows if s > 0]

    def dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not self.dim or k <= 0 or not len(self):
            return []
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if q.size != self.dim:
            raise KogataError(f"query vector has {q.size} dimensions, the index {self.dim}", "query with the embedder the index was built with")
        # one distance per row (``<#>`` is the negative inner product); HNSW serves ORDER BY distance alone
        order = "d" if self.hnsw else "d, row"
        query = self._sql(f"SELECT row, embedding <#> %(q)s AS d FROM {{schema}}.{{chunks}} ORDER BY {order} LIMIT %(k)s")
        with self._lock:
            if self.hnsw and self._ef_search < max(HNSW_EF_SEARCH, k):  # HNSW returns at most ef_search rows
                self._ef_search = max(HNSW_EF_SEARCH, int(k))
                self._read(f"SELECT set_config('hnsw.ef_search', '{self._ef_search}', false)")
            rows = self._read(query, {"q": q, "k": int(k)})
        return sorted(((int(r), -float(d)) for r, d in rows), key=lambda t: (-t[1], t[0]))

    def chunk(self, row: int) -> Chunk:
        hit = self._chunks.get(row)
        if hit is None:
            found = self._read(self._sql('SELECT chunk_id, doc_id, source, title, position, start, "end", text, hash '
                                         "FROM {schema}.{chunks} WHERE row = %s"), [int(row)])  # fmt: skip
            if not found:
                raise IndexError(f"no chunk at row {row}")
            found = found[0]
            if len(self._chunks) >= _CHUNK_CACHE:
                self._chunks.clear()
            hit = self._chunks[row] = Chunk(*found[:8], hash=found[8])
        return hit

    def rows(self, batch: int = 2000) -> Iterator[tuple[Chunk, list[str], np.ndarray | None]]:
        """Every chunk with its tokens and vector, in row order (what a new version reuses)."""
        vector = ", embedding" if self.dim else ""
        query = self._sql('SELECT chunk_id, doc_id, source, title, position, start, "end", text, hash, tokens' + vector +
                          " FROM {schema}.{chunks} WHERE row >= %s AND row < %s ORDER BY row")  # fmt: skip
        for lo in range(0, len(self), batch):
            for r in self._read(query, [lo, lo + batch]):
                yield Chunk(*r[:8], hash=r[8]), list(r[9]), (np.asarray(r[10].to_numpy(), dtype=np.float32) if self.dim else None)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _connect(libpq: str, url: str):
    try:
        import psycopg
    except ImportError:
        raise KogataError("the PostgreSQL search backend needs psycopg", 'pip install "psycopg[binary]" pgvector') from None
    try:
        return psycopg.connect(libpq, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    except psycopg.Error as exc:
        raise KogataError(f"PostgreSQL at {masked_url(url)} does not answer ({_first_line(exc)})",
                          "start the server or correct host, port, user and database in the URL "
                          "(the password may come from $PGPASSWORD or ~/.pgpass); or use --backend embedded") from None  # fmt: skip


def _ensure_pgvector(conn, url: str) -> None:
    """Enable pgvector in the database (once) and teach ``conn`` the ``vector`` type; KogataError saying how when it is missing."""
    import psycopg

    try:
        from pgvector.psycopg import register_vector
    except ImportError:
        raise KogataError("the PostgreSQL search backend needs the pgvector package for vectors", "pip install pgvector") from None
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise KogataError(f"the pgvector extension is not enabled in {masked_url(url)} and this user may not enable it",
                              "ask a superuser to run CREATE EXTENSION vector; in that database, or use --embedder none") from None  # fmt: skip
        except psycopg.Error as exc:
            raise KogataError(f"PostgreSQL at {masked_url(url)} has no pgvector extension ({_first_line(exc)})",
                              "install pgvector on the server (Debian/Ubuntu: apt-get install postgresql-NN-pgvector; "
                              "or build it from its source), or build a BM25-only index with --embedder none") from None  # fmt: skip
    register_vector(conn)


def check_server(url: str, *, need_pgvector: bool) -> None:
    """KogataError now when ``url`` does not answer (or lacks pgvector where vectors are needed)."""
    conn = _connect(_split(_with_env_password(url))[0], url)
    try:
        if need_pgvector:
            _ensure_pgvector(conn, url)
    finally:
        conn.close()
