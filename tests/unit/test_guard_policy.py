"""Guard policy: loading validates every key with a one-line error; verdicts combine actions by severity."""

from __future__ import annotations

import textwrap

import pytest

from kogata.core.errors import KogataError
from kogata.guard import GuardContext, Policy

SAFE = {"en": "Sorry, I can't help with that.", "ja": "申し訳ありませんが、お答えできません。"}


def policy(*checks, safe=SAFE) -> Policy:
    return Policy.from_dict({"checks": list(checks), "safe_reply": safe})


def test_example_policy_loads_and_covers_every_check():
    p = Policy.load("examples/policy-support-desk.yaml")
    assert {c.name for c in p.checks} == {"pii", "injection", "terms", "grounding", "format", "confidence"}
    assert set(p.safe_reply) >= {"en", "ja"}


def test_bare_yaml_on_key_is_read(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("checks:\n  - check: pii\n    on: [output]\n    action: redact\n", encoding="utf-8")
    p = Policy.load(f)
    assert p.checks[0].on == frozenset({"output"})
    assert p.check_input("mail a@example.com").action == "allow"  # pii runs on output only
    assert p.check_output("mail a@example.com").text == "mail [EMAIL]"


@pytest.mark.parametrize(
    "doc, key, words",
    [
        ({"checks": [{"check": "pi"}]}, "checks[0].check", "did you mean 'pii'"),
        ({"checks": [{"check": "pii", "action": "blok"}]}, "checks[0].action", "did you mean 'block'"),
        ({"checks": [{"check": "terms", "action": "block", "terms": {"x": ["a"]}}], "safe_reply": {"en": "no"}}, "safe_reply.ja", "missing"),
        ({"checks": [{"check": "terms", "action": "block", "terms": {"x": ["a"]}}]}, "safe_reply.en", "missing"),
        ({"checks": [{"check": "terms", "patterns": {"x": ["(unclosed"]}}]}, "checks[0].patterns", "bad regex"),
        ({"checks": [{"check": "injection", "extra_patterns": ["[a-"]}]}, "checks[0].extra_patterns", "bad regex"),
        ({"checks": [{"check": "pii", "typs": ["EMAIL"]}]}, "checks[0].typs", "did you mean 'types'"),
        ({"checks": [{"check": "pii", "types": ["EMIAL"]}]}, "checks[0].types", "unknown PII type"),
        ({"checks": [{"check": "grounding", "action": "redact"}]}, "checks[0].action", "no spans to redact"),
        ({"checks": [{"check": "pii", "on": ["inbound"]}]}, "checks[0].on", "input/output"),
        ({"checks": []}, "checks", "non-empty"),
        ({"checks": [{"check": "pii"}], "safe_replies": {}}, "safe_replies", "did you mean 'safe_reply'"),
        ({"checks": [{"check": "confidence", "min_mean_logprob": "low"}]}, "checks[0].min_mean_logprob", "number"),
    ],
)
def test_bad_policy_is_one_line_naming_the_key(doc, key, words):
    with pytest.raises(KogataError) as exc:
        Policy.from_dict(doc, source="p.yaml")
    msg = str(exc.value)
    assert "\n" not in msg and f"p.yaml: {key}:" in msg and words in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(KogataError, match="not found"):
        Policy.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - check: pii\n   action: [\n", encoding="utf-8")
    with pytest.raises(KogataError, match="not valid YAML at line"):
        Policy.load(bad)


def test_most_severe_action_wins_and_redaction_still_applies():
    p = policy(
        {"check": "pii", "action": "redact"},
        {"check": "terms", "action": "flag", "terms": {"refund": ["返金"]}},
        {"check": "terms", "action": "hold", "terms": {"promise": ["必ず返金"]}},
    )
    v = p.check_output("必ず返金します。ご連絡は090-1234-5678へ")
    assert v.action == "hold" and v.held and v.flagged and v.redacted
    assert v.text == "必ず返金します。ご連絡は[PHONE]へ"
    assert [r.check for r in v.fired()] == ["pii", "terms", "terms"]


def test_block_answers_with_the_safe_reply_in_the_askers_language():
    p = policy({"check": "terms", "action": "block", "terms": {"gambling": ["オンラインカジノ", "online casino"]}})
    ja = p.check_input("オンラインカジノのおすすめは？")
    assert ja.blocked and ja.text == SAFE["ja"] and ja.lang == "ja"
    en = p.check_output("Try an online casino.", GuardContext(question="What should I do this weekend?"))
    assert en.blocked and en.text == SAFE["en"]
    assert p.check_output("Try an online casino.", GuardContext(lang="ja")).text == SAFE["ja"]


def test_allow_action_reports_hits_without_acting():
    p = policy({"check": "pii", "action": "allow"})
    v = p.check_input("mail taro@example.co.jp")
    assert v.action == "allow" and v.text == "mail taro@example.co.jp"
    assert v.results[0].fired and v.results[0].hits[0].type == "EMAIL"


def test_verdict_to_dict_has_spans_and_no_raw_text_in_hits():
    p = policy({"check": "pii", "action": "redact"})
    d = p.check_input("電話 03-1234-5678").to_dict()
    hit = d["checks"][0]["hits"][0]
    assert hit == {"start": 3, "end": 15, "type": "PHONE", "score": 1.0}
    assert d["text"] == "電話 [PHONE]" and "03-1234" not in str(d["checks"])


def test_policy_file_with_every_option(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text(textwrap.dedent("""\
        checks:
          - check: pii
            on: [input, output]
            action: redact
            types: [EMAIL]
            placeholder: "<{type}>"
          - check: format
            on: [output]
            action: flag
            max_chars: 10
        safe_reply: {en: "no", ja: "いいえ"}
        """), encoding="utf-8")
    p = Policy.load(f)
    v = p.check_output("write to a@example.com or 03-1234-5678")
    assert v.text == "write to <EMAIL> or 03-1234-5678"  # phones not in types
    assert v.action == "redact" and [h.type for h in v.results[1].hits] == ["TOO_LONG"] and v.flagged
