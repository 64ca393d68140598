"""The served-model set: aliases → loaded artifacts (engines for language models, a locked runtime for embedders),
with hot swap.

A request takes a *lease* on the model its alias points at when it arrives; a swap loads and warms the new
artifact first, then switches the alias (new requests go to the new engine), then retires the old one: it waits
until the last lease on it is returned and closes it with ``drain=True``. A request therefore never meets a closed
engine — zero failed requests during a swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kogata.core.errors import KogataError
from kogata.ops.aliases import alias_target
from kogata.serve.config import ServeConfig
from kogata.serve.errors import APIError

log = logging.getLogger("kogata.serve")

EngineFactory = Callable[[Any, ServeConfig], Any]  # (artifact, config) -> Engine (not started)


def default_engine_factory(artifact: Any, config: ServeConfig) -> Any:
    from kogata.runtimes.engine import open_engine

    options = {"flash_attn": True} if config.flash_attn and getattr(artifact, "format", None) == "gguf" else {}
    return open_engine(artifact, parallel=config.parallel, ctx=config.ctx, threads=config.threads,
                       max_waiting=config.max_waiting, **options)


class EmbedderBackend:
    """An embedder runtime behind a lock (embedding calls are short; one at a time keeps memory flat)."""

    kind = "embedder"

    def __init__(self, artifact: Any):
        self.artifact = artifact
        self._runtime: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        from kogata.runtimes import open_runtime

        self._runtime = open_runtime("embedder", self.artifact)

    def ready(self) -> bool:
        return self._runtime is not None

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        """(float32 array of shape (len(texts), dim), prompt tokens)."""
        with self._lock:
            vectors = self._runtime.embed(texts)
            tokens = sum(len(self._runtime.tokenize(t)) for t in texts)
        return vectors, tokens

    def stats(self) -> dict[str, int]:
        return {"running": int(self._lock.locked()), "waiting": 0, "parallel": 1}

    def close(self, drain: bool = True) -> None:
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None


class ServedModel:
    """One loaded artifact and the requests currently holding it."""

    def __init__(self, artifact: Any, backend: Any):
        self.artifact = artifact
        self.backend = backend
        self.kind = "embedder" if getattr(backend, "kind", None) == "embedder" else "lm"
        self.loaded_at = 0.0
        self._inflight = 0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def id(self) -> str:
        return self.artifact.id

    def inflight(self) -> int:
        return self._inflight

    def retire(self, drain_timeout_s: float) -> None:
        """Wait for the requests holding this model (up to ``drain_timeout_s``), then close it."""
        deadline = time.monotonic() + drain_timeout_s
        with self._cond:
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.01, deadline - time.monotonic()))
            self._closed = True
        self.backend.close(drain=True)


class Lease:
    """A request's hold on a served model; :meth:`release` is idempotent."""

    __slots__ = ("alias", "model", "_held")

    def __init__(self, alias: str, model: ServedModel):
        self.alias = alias
        self.model = model
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            with self.model._cond:
                self.model._inflight -= 1
                self.model._cond.notify_all()


def _is_embedder(artifact: Any) -> bool:
    return getattr(artifact, "kind", None) == "embedder"


class ModelSet:
    def __init__(self, config: ServeConfig, store: Any, *, engine_factory: EngineFactory | None = None,
                 on_alias_change: Callable[[str, str, str | None, str | None], None] | None = None):
        self.config = config
        self.store = store
        self.engine_factory = engine_factory or default_engine_factory
        self.on_alias_change = on_alias_change
        self._routes: dict[str, ServedModel] = {}
        self._lock = threading.RLock()
        self._swap_lock = threading.Lock()
        self.loading = True
        self.error: str | None = None
        # resolve every artifact now: an unknown name fails before anything loads
        self._plan: list[tuple[Any, list[str]]] = []
        self.followed: dict[str, str] = {}  # served alias → the store alias it follows ("@NAME" entries)
        seen: set[str] = set()
        for entry in config.models:
            if entry.artifact.startswith("@"):
                name = entry.artifact[1:]
                art = store.get(alias_target(store.engine, name))
                aliases = entry.aliases or [name]
                self.followed.update({a: name for a in aliases})
            else:
                art = store.get(entry.artifact)
                aliases = entry.aliases or [art.name]
            for a in aliases:
                if a in seen:
                    raise KogataError(f"alias {a!r} is given twice", "each alias names one model")
                seen.add(a)
            self._plan.append((art, aliases))

    def planned_aliases(self) -> set[str]:
        """Every alias this server will serve (known before anything loads)."""
        return {a for _, aliases in self._plan for a in aliases}

    # ---- loading -----------------------------------------------------------------------------------
    def _load(self, artifact: Any) -> ServedModel:
        backend = EmbedderBackend(artifact) if _is_embedder(artifact) else self.engine_factory(artifact, self.config)
        started = time.perf_counter()
        backend.start()
        model = ServedModel(artifact, backend)
        model.loaded_at = time.time()
        log.info("loaded %s (%s) in %.1f s", artifact.name, artifact.id, time.perf_counter() - started)
        return model

    def start(self) -> None:
        """Load and warm every planned artifact (blocking); then :attr:`loading` is False."""
        try:
            for art, aliases in self._plan:
                model = self._load(art)
                with self._lock:
                    for a in aliases:
                        self._routes[a] = model
                for a in aliases:
                    if self.on_alias_change is not None:
                        self.on_alias_change(a, art.id, "kogata serve", "serve start")
        except Exception as exc:
            self.error = str(exc)
            raise
        finally:
            self.loading = False

    def ready(self) -> bool:
        with self._lock:
            return not self.loading and self.error is None and bool(self._routes) and all(
                m.backend.ready() for m in self._routes.values())

    # ---- lookup ------------------------------------------------------------------------------------
    def resolve(self, name: str) -> tuple[str, ServedModel]:
        """(alias, model) for an alias, or for a served artifact's name or id."""
        with self._lock:
            model = self._routes.get(name)
            if model is not None:
                return name, model
            for alias, m in self._routes.items():
                if name in (m.artifact.name, m.artifact.id):
                    return alias, m
            known = ", ".join(sorted(self._routes)) or "(none yet: still loading)"
        raise APIError(404, f"model {name!r} is not served here; served models: {known}", code="model_not_found", param="model")

    def acquire(self, name: str) -> Lease:
        """Resolve ``name`` and take a lease on its model (atomic with respect to swaps); release it when done."""
        with self._lock:
            alias, model = self.resolve(name)
            with model._cond:
                model._inflight += 1
        return Lease(alias, model)

    def routes(self) -> dict[str, ServedModel]:
        with self._lock:
            return dict(self._routes)

    def artifact_ids(self) -> list[str]:
        ids: list[str] = []
        for m in self.routes().values():
            if m.id not in ids:
                ids.append(m.id)
        if not ids:
            ids = [a.id for a, _ in self._plan]
        return ids

    def stats(self) -> list[tuple[str, str, dict[str, int]]]:
        return [(alias, m.id, m.backend.stats()) for alias, m in self.routes().items()]

    # ---- hot swap ----------------------------------------------------------------------------------
    def swap(self, alias: str, ref: str, *, by: str | None, reason: str | None) -> dict[str, Any]:
        """Point ``alias`` at artifact ``ref``: load + warm it, switch, then drain and close the old one."""
        with self._swap_lock:
            art = self.store.get(ref)
            with self._lock:
                old = self._routes.get(alias)
            if old is not None and old.id == art.id:
                return {"alias": alias, "artifact_id": art.id, "previous_id": art.id, "changed": False}
            shared = next((m for m in self.routes().values() if m.id == art.id), None)
            new = shared or self._load(art)
            with self._lock:
                self._routes[alias] = new
                still_used = old is not None and any(m is old for m in self._routes.values())
            if self.on_alias_change is not None:
                self.on_alias_change(alias, art.id, by, reason)
            if old is not None and not still_used:
                threading.Thread(target=old.retire, args=(self.config.drain_timeout_s,), name=f"retire-{old.id}",
                                 daemon=True).start()
            log.info("alias %s: %s -> %s", alias, old.id if old else None, art.id)
            return {"alias": alias, "artifact_id": art.id, "artifact_name": art.name,
                    "previous_id": old.id if old else None, "changed": True}

    def follow_store(self) -> list[dict[str, Any]]:
        """Swap every "@NAME" alias whose store alias now names another artifact (``kogata models alias set`` /
        ``promote`` / ``rollback`` elsewhere); returns the swaps made. In-flight requests finish on the old model."""
        if not self.followed or self.loading:
            return []
        from kogata.ops.aliases import current_aliases

        now = current_aliases(self.store.engine)
        done = []
        for served, name in self.followed.items():
            target = (now.get(name) or {}).get("artifact_id")
            current = self.routes().get(served)
            if target and current is not None and current.id != target:
                done.append(self.swap(served, target, by="kogata serve", reason=f"follows store alias {name}"))
        return done

    def close(self, drain: bool = True) -> None:
        with self._lock:
            models = {id(m): m for m in self._routes.values()}.values()
            self._routes = {}
        for m in models:
            if drain:
                m.retire(self.config.drain_timeout_s)
            else:
                m.backend.close(drain=False)
