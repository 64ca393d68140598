"""Every client mistake is a 4xx with OpenAI's error object — never a 5xx, never a traceback — and the server
keeps serving afterwards. Plus the metrics names and the health/ready endpoints."""

from __future__ import annotations

import json

import httpx
import pytest

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
JSON = {"content-type": "application/json"}


def _msg(content="Hi"):
    return [{"role": "user", "content": content}]


# (name, path, raw body bytes or JSON-able object, expected status, expected param or None, text in message)
CASES = [
    ("bad json", TEXT, b'{"model": "prod", "prompt": ', 400, None, "not valid JSON"),
    ("not an object", TEXT, [1, 2], 400, None, None),
    ("empty body", TEXT, b"", 400, None, None),
    ("invalid utf-8", TEXT, b'{"model": "prod", "prompt": "\xff\xfe"}', 400, None, "UTF-8"),
    ("unknown model", TEXT, {"model": "nope", "prompt": "a"}, 404, "model", "not served"),
    ("missing model", TEXT, {"prompt": "a"}, 400, "model", "missing"),
    ("missing prompt", TEXT, {"model": "prod"}, 400, "prompt", "missing"),
    ("max_tokens -1", TEXT, {"model": "prod", "prompt": "a", "max_tokens": -1}, 400, "max_tokens", None),
    ("max_tokens 0", TEXT, {"model": "prod", "prompt": "a", "max_tokens": 0}, 400, "max_tokens", None),
    ("max_tokens a string", TEXT, {"model": "prod", "prompt": "a", "max_tokens": "5"}, 400, "max_tokens", "integer"),
    ("max_tokens too large", TEXT, {"model": "prod", "prompt": "a", "max_tokens": 10**6}, 400, "max_tokens", "256"),
    ("max_tokens a float", TEXT, {"model": "prod", "prompt": "a", "max_tokens": 2.5}, 400, "max_tokens", None),
    ("temperature a string", TEXT, {"model": "prod", "prompt": "a", "temperature": "hot"}, 400, "temperature", None),
    ("temperature 5", TEXT, {"model": "prod", "prompt": "a", "temperature": 5}, 400, "temperature", None),
    ("top_p 0", TEXT, {"model": "prod", "prompt": "a", "top_p": 0}, 400, "top_p", None),
    ("stream a string", TEXT, {"model": "prod", "prompt": "a", "stream": "yes"}, 400, "stream", None),
    ("unknown field", TEXT, {"model": "prod", "prompt": "a", "frobnicate": True}, 400, "frobnicate", "Unrecognized"),
    ("1000 stop strings", TEXT, {"model": "prod", "prompt": "a", "stop": [f"s{i}" for i in range(1000)]}, 400, "stop", "1000"),
    ("empty stop string", TEXT, {"model": "prod", "prompt": "a", "stop": [""]}, 400, "stop", None),
    ("two prompts", TEXT, {"model": "prod", "prompt": ["a", "b"]}, 400, "prompt", None),
    ("token-id prompt", TEXT, {"model": "prod", "prompt": [1, 2, 3]}, 400, "prompt", None),
    ("context overflow", TEXT, {"model": "prod", "prompt": "word " * 600, "max_tokens": 8}, 400, "prompt", "256"),
    ("n = 2", CHAT, {"model": "prod", "messages": _msg(), "n": 2}, 400, "n", None),
    ("no messages", CHAT, {"model": "prod", "messages": []}, 400, "messages", None),
    ("bad role", CHAT, {"model": "prod", "messages": [{"role": "wizard", "content": "a"}]}, 400, "messages.0.role", None),
    ("content a number", CHAT, {"model": "prod", "messages": [{"role": "user", "content": 5}]}, 400, None, None),
    ("image part", CHAT, {"model": "prod", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     400, None, None),
    ("bad response_format", CHAT, {"model": "prod", "messages": _msg(), "response_format": {"type": "xml"}}, 400, None, None),
    ("json_schema missing", CHAT, {"model": "prod", "messages": _msg(), "response_format": {"type": "json_schema"}}, 400,
     "response_format.json_schema", None),
    ("presence_penalty", CHAT, {"model": "prod", "messages": _msg(), "presence_penalty": 1.0}, 400, "presence_penalty", None),
    ("embeddings on an LM", "/v1/embeddings", {"model": "prod", "input": "a"}, 400, "model", "embedder"),
    ("chat context overflow", CHAT, {"model": "prod", "messages": _msg("ありがとう" * 300)}, 400, "messages", "context"),
]


@pytest.mark.parametrize("name,path,body,status,param,text", CASES, ids=[c[0] for c in CASES])
def test_client_mistakes_are_4xx_with_openai_errors(server, name, path, body, status, param, text):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + path, content=data, headers=JSON, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"].endswith("_error") and err["message"] and "Traceback" not in err["message"]
    if param is not None:
        assert err["param"] == param
    if text is not None:
        assert text in err["message"]
    assert r.headers["x-kogata-artifact"]


def test_body_over_the_limit_is_413_without_reading_it_all(server):
    big = json.dumps({"model": "prod", "prompt": "a" * (10 * 1024 * 1024)}).encode()  # a 10 MB prompt
    r = httpx.post(server.url + TEXT, content=big, headers=JSON, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_unknown_route_and_method(server):
    assert httpx.get(server.url + "/v1/nothing", timeout=10).json()["error"]["type"] == "not_found_error"
    r = httpx.delete(server.url + TEXT, timeout=10)
    assert r.status_code == 405 and "error" in r.json()


def test_server_still_serves_and_counts(server):
    r = httpx.post(server.url + TEXT, json={"model": "prod", "prompt": "Hi", "max_tokens": 3, "temperature": 0}, timeout=30)
    assert r.status_code == 200
    metrics = httpx.get(server.url + "/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in ("kogata:time_to_first_token_seconds_bucket", "kogata:inter_token_latency_seconds_bucket",
                 "kogata:e2e_request_latency_seconds_bucket", "kogata:request_queue_time_seconds_bucket",
                 "kogata:prompt_tokens_total", "kogata:generation_tokens_total", "kogata:request_success_total",
                 "kogata:num_requests_running", "kogata:num_requests_waiting", "kogata:http_requests_total"):
        assert name in text, name
    assert 'finished_reason="length"' in text and 'model_name="prod"' in text
    assert 'route="/v1/completions",status="400"' in text  # the bad inputs above were counted, by route template
    assert "5xx" not in text and 'status="500"' not in text


def test_health_and_ready(server):
    h = httpx.get(server.url + "/health", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert httpx.get(server.url + "/ready", timeout=10).json() == {"ready": True, "status": "ok"}
