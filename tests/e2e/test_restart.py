"""Faults: ``kill -9`` of the server leaves no process behind and a restart on the same port serves again;
SIGTERM lets an in-flight stream finish, then the process ends; a client that disconnects frees its decode slot."""

from __future__ import annotations

import os
import signal
import time

import httpx

from tests.e2e.conftest import ServerProcess, free_port

BODY = {"model": "prod", "prompt": "Hello", "max_tokens": 4, "temperature": 0}


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def test_kill_9_then_restart_serves_again(serve_home):
    port = free_port()
    args = ["tiny", "--alias", "prod", "--ctx", "256", "--parallel", "2"]
    first = ServerProcess(serve_home, args, port=port, log_name="kill9").start()
    assert httpx.post(first.url + "/v1/completions", json=BODY, timeout=30).status_code == 200
    pid = first.proc.pid
    os.killpg(pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(pid) == []  # nothing of the old server survives
    second = ServerProcess(serve_home, args, port=port, log_name="kill9-restart").start()
    try:
        r = httpx.post(second.url + "/v1/completions", json=BODY, timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    finally:
        assert second.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_sigterm_finishes_the_stream_in_flight(serve_home):
    srv = ServerProcess(serve_home, ["tiny", "--alias", "prod", "--ctx", "256", "--parallel", "1"], log_name="sigterm").start()
    body = {"model": "prod", "prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    lines = []
    try:
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line and not lines:
                    os.killpg(srv.proc.pid, signal.SIGTERM)  # after the first event: the rest must still arrive
                if line:
                    lines.append(line)
        assert lines[-1] == "data: [DONE]"
        assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        refused = False
        try:
            httpx.get(srv.url + "/health", timeout=2)
        except httpx.TransportError:
            refused = True
        assert refused
    finally:
        srv.stop(signal.SIGKILL)


def test_client_disconnect_leaves_no_slot_busy(serve_home):
    """A client hanging up mid-stream: its slot is free again (cancelled, or finished — the tiny model decodes
    250 tokens in well under a second, so which one happens depends on timing) and the next request is served."""
    srv = ServerProcess(serve_home, ["tiny", "--alias", "prod", "--ctx", "256", "--parallel", "1", "--max-waiting", "0"],
                        log_name="disconnect").start()
    try:
        body = {"model": "prod", "prompt": "Once", "max_tokens": 250, "temperature": 0, "stream": True}
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=60) as r:
            next(r.iter_lines())  # one event, then hang up
        deadline = time.monotonic() + 10
        stats = None
        while time.monotonic() < deadline:
            stats = httpx.get(srv.url + "/health", timeout=5).json()["models"]["prod"]
            if stats["running"] == 0:
                break
            time.sleep(0.05)
        assert stats is not None and stats["running"] == 0 and stats["waiting"] == 0
        assert httpx.post(srv.url + "/v1/completions", json=BODY, timeout=30).status_code == 200
        m = httpx.get(srv.url + "/metrics", timeout=5).text
        assert 'finished_reason="cancelled"' in m or 'finished_reason="length"' in m
    finally:
        srv.stop()
