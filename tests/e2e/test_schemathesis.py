"""``schemathesis`` over the live server's ``/openapi.json``: requests generated from the schema (valid and
invalid, a bounded number per mode) never get a 5xx, and every answer matches the documented status codes,
content types and response schemas. Half the generated bodies name the served model so that generation runs.

schemathesis 4.32's pytest plugin (``@schema.parametrize``) fails under pytest 9 (``'Function' object has no
attribute '_nodeid'``), so its documented non-plugin route is used: ``schema.as_strategy()`` with hypothesis's
``@given`` and ``case.call_and_validate``.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 100  # per generation mode, over all operations (12 of them: each is reached)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_server_errors_and_documented_answers(server, mode):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    seen: set[str] = set()

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        if isinstance(case.body, dict) and "model" in case.body and hash(repr(case.body)) % 2 == 0:
            case.body["model"] = "prod"
        seen.add(f"{case.method} {case.path}")
        case.call_and_validate(checks=CHECKS, timeout=60)

    run()
    assert {"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings"} <= seen
