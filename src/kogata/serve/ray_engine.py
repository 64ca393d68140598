"""Scale-out: the serving engine as Ray Serve replicas behind the same gateway (``kogata serve --ray --replicas N``).

Each replica is a Ray Serve deployment replica holding kogata's own batched engine over the same GGUF (so a
replica serves exactly the build ``kogata eval`` measured); the gateway — auth, quotas, guard checks, audit,
metrics, the OpenAI shapes — stays in the ``kogata serve`` process and sees :class:`RayReplicaEngine`, which has
the engine contract of :mod:`kogata.runtimes.engine` (``submit`` → an :class:`EngineStream`). Ray Serve routes
each request to a replica (power of two choices on queue length); pieces stream back through a deployment
handle. ``RAY_ADDRESS`` (or ``ray: {address: ...}``) joins a running cluster; otherwise a local Ray instance is
started for this process (no dashboard, no Ray HTTP proxy: the gateway is the only HTTP server).

Errors raised by a replica's engine (context overflow, queue full, closed) reach the gateway as the same
exception types, so they answer with the same 4xx/429/503 as the in-process engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from kogata.runtimes.base import GenerateRequest
from kogata.runtimes.engine.stream import EngineStream

log = logging.getLogger("kogata.serve")


def _deployment() -> Any:
    from ray import serve

    @serve.deployment(name="kogata-engine", max_ongoing_requests=256)
    class EngineReplica:
        def __init__(self, artifact_path: str, parallel: int, ctx: int, threads: int | None, max_waiting: int):
            from kogata.artifacts.artifact import Artifact
            from kogata.runtimes.engine import open_engine

            self.engine = open_engine(Artifact.read(Path(artifact_path)), parallel=parallel, ctx=ctx, threads=threads,
                                      max_waiting=max_waiting)
            self.engine.start()
            self.replica = serve.get_replica_context().replica_id.unique_id

        async def generate(self, request: dict[str, Any], queue_timeout_s: float | None = None):
            stream = self.engine.submit(GenerateRequest(**request), queue_timeout_s=queue_timeout_s)
            try:
                async for piece in stream:
                    yield self.replica, piece
            finally:
                if not stream.done:
                    stream.cancel()

        def tokenize(self, text: str, add_special: bool = True) -> list[int]:
            return self.engine.tokenize(text, add_special=add_special)

        def render_chat(self, messages: list[dict[str, str]]) -> str:
            return self.engine.render_chat(messages)

        def stats(self) -> dict[str, Any]:
            return {"replica": self.replica, **self.engine.stats()}

        def __del__(self) -> None:
            engine = getattr(self, "engine", None)
            if engine is not None:
                engine.close(drain=False)

    return EngineReplica


def _cause(exc: BaseException) -> BaseException:
    """The replica's own exception inside Ray's wrapper (RayTaskError keeps it as ``cause``)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class RayReplicaEngine:
    """``replicas`` Ray Serve replicas of the batched engine, seen by the gateway as one engine."""

    def __init__(self, artifact: Any, *, replicas: int, parallel: int, ctx: int, threads: int | None, max_waiting: int,
                 address: str | None = None):
        self.artifact = artifact
        self.replicas = replicas
        self.n_ctx = ctx
        self.parallel = parallel * replicas
        self._per_replica = {"parallel": parallel, "ctx": ctx, "threads": threads, "max_waiting": max_waiting}
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.app_name = f"kogata-{artifact.id[:12]}"
        self.handle: Any = None
        self._started_ray = False
        self._lock = threading.Lock()
        self._running = 0
        self.served_by: Counter[str] = Counter()  # replica id → requests it answered

    def start(self) -> None:
        from ray import serve

        self._started_ray = init_ray(self.address)
        serve.start(proxy_location="Disabled")
        threads = self._per_replica["threads"] or 1
        app = _deployment().options(num_replicas=self.replicas, ray_actor_options={"num_cpus": min(threads, 1.0)}).bind(
            str(self.artifact.path), self._per_replica["parallel"], self._per_replica["ctx"], self._per_replica["threads"],
            self._per_replica["max_waiting"])
        self.handle = serve.run(app, name=self.app_name, route_prefix=None)
        log.info("%d Ray Serve replica(s) of %s ready", self.replicas, self.artifact.name)

    def ready(self) -> bool:
        return self.handle is not None

    def submit(self, request: GenerateRequest, *, queue_timeout_s: float | None = None) -> EngineStream:
        if self.handle is None:
            from kogata.runtimes.engine.errors import EngineClosed

            raise EngineClosed("the Ray replicas are not running")
        call: dict[str, Any] = {}

        def cancel(_: EngineStream) -> None:
            if "gen" in call:
                call["gen"].cancel()

        stream = EngineStream(prompt_tokens=0, on_cancel=cancel)
        threading.Thread(target=self._pump, args=(dataclasses.asdict(request), queue_timeout_s, stream, call),
                         name="ray-stream", daemon=True).start()
        return stream

    def _pump(self, request: dict[str, Any], queue_timeout_s: float | None, stream: EngineStream, call: dict[str, Any]) -> None:
        """In its own thread (no event loop: the handle's blocking API): call a replica, push what it streams."""
        with self._lock:
            self._running += 1
        try:
            gen = call["gen"] = self.handle.options(stream=True).generate.remote(request, queue_timeout_s)
            if stream.cancelled:
                gen.cancel()
                return
            for replica, piece in gen:
                if piece.finish_reason is not None:  # counted before the reader can see the end
                    with self._lock:
                        self.served_by[replica] += 1
                stream.push(piece)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, who maps it to a status
            if not stream.cancelled:
                stream.fail(_cause(exc))
        finally:
            with self._lock:
                self._running -= 1

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.handle.tokenize.remote(text, add_special).result()

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.handle.render_chat.remote(messages).result()

    def stats(self) -> dict[str, int]:
        with self._lock:
            running = self._running
        return {"running": min(running, self.parallel), "waiting": max(0, running - self.parallel), "parallel": self.parallel,
                "replicas": self.replicas}

    def close(self, drain: bool = True) -> None:
        if self.handle is None:
            return
        from ray import serve

        try:
            serve.delete(self.app_name, _blocking=drain)
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.warning("removing the Ray Serve app failed: %s", exc)
        self.handle = None
        if self._started_ray:
            import ray

            serve.shutdown()
            ray.shutdown()


def init_ray(address: str | None = None) -> bool:
    """Connect to Ray (``address`` / ``RAY_ADDRESS``) or start a local instance; True if this call started one.
    Must run on the main thread the first time (Ray's driver hangs when first initialised from another thread):
    ``kogata serve --ray`` calls it while building the app, before the models load in their thread."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             **({} if address else {"num_cpus": os.cpu_count() or 1, "object_store_memory": 256 << 20}))
    return address is None


def ray_engine_factory(artifact: Any, config: Any) -> Any:
    """``EngineFactory`` for ``--ray``: GGUF artifacts as replicas; anything else is served in process."""
    if getattr(artifact, "format", None) != "gguf":
        from kogata.serve.models import default_engine_factory

        return default_engine_factory(artifact, config)
    return RayReplicaEngine(artifact, replicas=config.replicas, parallel=config.parallel, ctx=config.ctx, threads=config.threads,
                            max_waiting=config.max_waiting)
