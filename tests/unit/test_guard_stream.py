"""Streaming output checks: a redacted span never leaves in an earlier chunk, at any split point."""

from __future__ import annotations

import pytest

from kogata.guard import GuardContext, Policy

SAFE = {"en": "Sorry, I can't help with that.", "ja": "申し訳ありませんが、お答えできません。"}
RAW_SPANS = ["０３－１２３４－５６７８", "taro.yamada@example.co.jp", "東京都渋谷区神宮前1-2-3", "4111 1111 1111 1111", "+1 415 555 0100"]
ANSWER = ("ご連絡先は０３－１２３４－５６７８、メールはtaro.yamada@example.co.jp、住所は東京都渋谷区神宮前1-2-3です。"
          "カード4111 1111 1111 1111。US: +1 415 555 0100.")


def redact_policy(**extra) -> Policy:
    checks = [{"check": "pii", "on": ["output"], "action": "redact"},
              {"check": "terms", "on": ["output"], "action": "block", "terms": {"gambling": ["オンラインカジノ", "online casino"]}}]
    return Policy.from_dict({"checks": checks + extra.get("more", []), "safe_reply": SAFE})


def run(policy, pieces, ctx=None):
    g = policy.stream(ctx)
    chunks = [g.feed(p) for p in pieces]
    rest, verdict = g.finish()
    return chunks, rest, verdict


def leaked(chunks):
    """A raw span, or its start of 4+ characters, in what was sent before the end."""
    sent = "".join(chunks)
    return [s for s in RAW_SPANS if any(s[:k] in sent for k in range(4, len(s) + 1))]


def test_every_two_way_split_redacts_like_the_whole_text():
    p = redact_policy()
    whole = p.check_output(ANSWER).text
    assert all(s not in whole for s in RAW_SPANS)
    for i in range(len(ANSWER) + 1):
        chunks, rest, v = run(p, [ANSWER[:i], ANSWER[i:]])
        assert "".join(chunks) + rest == whole, i
        assert leaked(chunks[:1]) == [], i
        assert v.action == "redact"


def test_every_three_way_split_never_leaks():
    p = redact_policy()
    whole = p.check_output(ANSWER).text
    for i in range(0, len(ANSWER), 3):
        for j in range(i, len(ANSWER) + 1, 2):
            chunks, rest, _ = run(p, [ANSWER[:i], ANSWER[i:j], ANSWER[j:]])
            assert "".join(chunks) + rest == whole, (i, j)
            assert leaked(chunks) == [], (i, j)


def test_char_by_char_streams_early_and_holds_little():
    p = redact_policy()
    text = "お問い合わせありがとうございます。明日の午前中にお届けします。ご不便をおかけしました。"
    g = p.stream()
    sent_lengths = []
    for c in text:
        g.feed(c)
        sent_lengths.append(len(g.sent))
    # plain prose goes out as it arrives: at most a few characters are held at any point
    assert all(len(text[: i + 1]) - n <= 6 for i, n in enumerate(sent_lengths))
    rest, v = g.finish()
    assert g.sent + rest == text and v.action == "allow"


def test_block_stops_the_stream_before_the_term():
    p = redact_policy()
    text = "おすすめはオンラインカジノです。ほかにも色々あります。"
    g = p.stream()
    out = "".join(g.feed(c) for c in text)
    assert "オンライン" not in out and g.blocked
    rest, v = g.finish()
    assert v.blocked and rest == SAFE["ja"] and v.text == SAFE["ja"]


def test_hold_policy_holds_the_whole_answer():
    hold = {"check": "terms", "on": ["output"], "action": "hold", "terms": {"promise": ["全額返金"]}}
    p = redact_policy(more=[hold])
    g = p.stream()
    assert g.hold_all
    text = "全額返金します。電話03-1234-5678"
    assert [g.feed(c) for c in text] == [""] * len(text)
    rest, v = g.finish()
    assert v.held and rest == "全額返金します。電話[PHONE]"


def test_whole_text_block_checks_hold_the_stream():
    p = Policy.from_dict({"checks": [{"check": "grounding", "on": ["output"], "action": "block"}], "safe_reply": SAFE})
    ctx = GuardContext(question="診断料は？", passages=["診断料は2,200円です。"])
    chunks, rest, v = run(p, ["診断料は", "3,300円です。"], ctx)
    assert chunks == ["", ""] and v.blocked and rest == SAFE["ja"]
    chunks, rest, v = run(p, ["診断料は", "2,200円です。"], ctx)
    assert chunks == ["", ""] and v.action == "allow" and rest == "診断料は2,200円です。"


@pytest.mark.parametrize("split", [1, 5, 9])
def test_flag_checks_run_at_the_end_without_holding(split):
    p = Policy.from_dict({"checks": [{"check": "format", "on": ["output"], "action": "flag", "max_chars": 10}], "safe_reply": SAFE})
    text = "This answer is longer than ten characters."
    chunks, rest, v = run(p, [text[:split], text[split:]])
    assert "".join(chunks) + rest == text and chunks[0] == text[:split]
    assert v.flagged and v.action == "flag"
