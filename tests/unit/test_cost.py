"""Price profiles and the serving-cost arithmetic (numbers checked by hand, no timing)."""

from __future__ import annotations

import math

import pytest

from kogata.core.errors import KogataError
from kogata.eval.cost import add_savings, builtin_profiles, estimate_cost, load_price


def test_builtin_profiles_load_and_state_their_assumptions():
    names = builtin_profiles()
    assert {"cloud-2vcpu-jpy", "cloud-2vcpu-usd", "onprem-pc-jpy"} <= set(names)
    for name in names:
        p = load_price(name)
        assert p.name == name and p.price_per_hour > 0 and p.description
        assert 0 < p.utilisation <= 1 and p.requests_per_month > 0
    assert load_price("cloud-2vcpu-jpy").currency == "JPY"
    assert load_price("cloud-2vcpu-usd").currency == "USD"


def test_cost_arithmetic():
    p = load_price({"profile": "cloud-2vcpu-usd", "price_per_hour": 0.1, "requests_per_month": 100_000,
                    "prompt_tokens_per_request": 300, "output_tokens_per_request": 80, "utilisation": 0.5,
                    "hours_per_month": 730})
    c = estimate_cost(prefill_tok_s=100.0, decode_tok_s=10.0, profile=p)
    assert c["seconds_per_request"] == pytest.approx(3.0 + 8.0)
    assert c["requests_per_machine_hour"] == pytest.approx(3600 / 11)
    assert c["cost_per_1k_requests"] == pytest.approx(0.1 * 11 * 1000 / 3600)
    assert c["cost_per_1m_tokens"] == pytest.approx(0.1 * 11 / 380 * 1e6 / 3600)
    capacity = 3600 / 11 * 730 * 0.5
    assert c["machines_needed"] == pytest.approx(100_000 / capacity)
    assert c["machines"] == 1
    assert c["cost_per_month"] == pytest.approx(730 * 0.1)  # a machine is paid for the whole month
    assert c["compute_cost_per_month"] == pytest.approx(100_000 * 11 / 3600 * 0.1)
    assert c["currency"] == "USD"


def test_more_machines_when_the_workload_needs_them():
    p = load_price({"profile": "cloud-2vcpu-jpy", "requests_per_month": 1_000_000})
    c = estimate_cost(100.0, 10.0, p)
    assert c["machines"] == math.ceil(c["machines_needed"]) > 1
    assert c["cost_per_month"] == pytest.approx(c["machines"] * 730 * 15)


def test_inline_profile_overrides_a_builtin_and_keeps_the_rest():
    p = load_price({"profile": "onprem-pc-jpy", "requests_per_month": 5000})
    base = load_price("onprem-pc-jpy")
    assert p.requests_per_month == 5000 and p.currency == "JPY" and p.price_per_hour == base.price_per_hour
    assert "custom" in p.name


@pytest.mark.parametrize(
    "spec, match",
    [
        ("no-such-profile", "unknown price profile"),
        ({"profile": "cloud-2vcpu-usd", "price_per_hr": 1}, "unknown price profile field"),
        ({"profile": "cloud-2vcpu-usd", "utilisation": 0}, "utilisation"),
        ({"profile": "cloud-2vcpu-usd", "price_per_hour": "cheap"}, "must be a number"),
        (42, "price must be"),
    ],
)
def test_bad_profiles_are_explained(spec, match):
    with pytest.raises(KogataError, match=match):
        load_price(spec)


def test_unmeasured_throughput_has_no_cost():
    p = load_price("cloud-2vcpu-usd")
    assert estimate_cost(None, 10.0, p) is None
    assert estimate_cost(100.0, 0.0, p) is None


def test_savings_against_the_baseline():
    p = load_price("cloud-2vcpu-usd")
    costs = {"base": estimate_cost(100.0, 10.0, p), "fast": estimate_cost(400.0, 40.0, p), "broken": None}
    costs["base"]["cost_per_month"] = 200.0  # pretend the baseline needs more machines
    add_savings(costs, "base")
    s = costs["fast"]["saving"]
    assert s["vs"] == "base"
    assert s["per_month"] == pytest.approx(200.0 - costs["fast"]["cost_per_month"])
    assert s["per_month_pct"] == pytest.approx(100 * s["per_month"] / 200.0)
    assert s["compute_per_month_pct"] == pytest.approx(75.0)  # 4× the throughput = a quarter of the busy time
    assert costs["base"]["saving"]["per_month"] == 0
    add_savings(costs, None)
    assert costs["fast"]["saving"] is None


def test_price_profiles_are_one_registry(tmp_path, monkeypatch):
    from kogata.eval import cost

    assert set(builtin_profiles()) <= set(cost.price_profiles()) and cost.price_profiles_help() == ", ".join(cost.price_profiles())
    with pytest.raises(KogataError) as err:
        load_price("cloud-4vcpu-eur")
    assert all(name in err.value.hint for name in builtin_profiles())
    own = tmp_path / "dc.yaml"
    own.write_text("currency: EUR\nprice_per_hour: 0.2\nrequests_per_month: 1000\nprompt_tokens_per_request: 100\n"
                   "output_tokens_per_request: 20\ndescription: our own rack\n", encoding="utf-8")
    monkeypatch.setattr(cost, "_REGISTERED", {})
    cost.register_price_profile("our-dc", own)
    assert "our-dc" in cost.price_profiles() and "our-dc" not in builtin_profiles()
    p = load_price({"profile": "our-dc", "requests_per_month": 5000})
    assert p.currency == "EUR" and p.requests_per_month == 5000 and p.name == "our-dc (custom)"
    with pytest.raises(KogataError, match="does not exist"):
        cost.register_price_profile("gone", tmp_path / "missing.yaml")


def test_suite_with_an_unknown_price_profile_fails_at_load(tmp_path):
    from kogata.eval.suite import load_suite
    from tests.unit._tiny import SUITE_YAML, write_tiny_suite

    path = write_tiny_suite(tmp_path / "s", SUITE_YAML + "price: cloud-2vcpu-xxx\n")
    with pytest.raises(KogataError, match=r"suite.yaml: price: unknown price profile 'cloud-2vcpu-xxx'"):
        load_suite(path)
