"""The review queue: which audit rows become items, state transitions, two reviewers at once, a held answer
released exactly once, user feedback (the route is tested through the serve app in test_serve_guarding.py), and the export read by `data prepare` and lora."""

from __future__ import annotations

import json
import threading

import pytest

from kogata.core.errors import KogataError
from kogata.ops.audit import AuditLog, AuditRecord
from kogata.ops.review import ReviewConflict, ReviewPending, ReviewQueue, UnknownResponse
from kogata.ops.review.queue import sampled
from tests.cli_helpers import run_cli

QUESTION = "返品はいつまでできますか？注文から何日以内なら受け付けてもらえるのか教えてください。"
ANSWER = "返品はいつでも可能です。"
RIGHT = "商品到着後30日以内であれば、マイページの「返品申請」からお手続きいただけます。"


def exchange(i: int, action: str = "allow", mean_logprob: float = -0.2) -> AuditRecord:
    return AuditRecord(
        request_id=f"req-{i}", response_id=f"chatcmpl-{i}", model_alias="production", artifact_id="a1b2",
        endpoint="chat.completions", action=action,
        input=[{"role": "system", "content": "あなたはサポート担当です。"}, {"role": "user", "content": f"{QUESTION}（{i}）"}],
        output=f"{ANSWER}（{i}）", verdicts={"output": {"action": action, "hits": []}}, meta={"mean_logprob": mean_logprob},
    )


@pytest.fixture()
def queue(tmp_path) -> ReviewQueue:
    audit = AuditLog.open(tmp_path / "home", checkpoint_every=1000, checkpoint_seconds=3600)
    return ReviewQueue(audit.engine, audit=audit, low_confidence=-1.5)


def add(queue: ReviewQueue, i: int, action: str = "flag", **kw):
    return queue.consider(queue.audit.append(exchange(i, action, **kw)))


def test_which_exchanges_are_queued(queue):
    sources = {a: (add(queue, n, a) or None) for n, a in enumerate(["allow", "redact", "block", "flag", "hold"])}
    assert sources["allow"] is None and sources["redact"] is None and sources["block"] is None
    assert sources["flag"].source == "flag" and sources["hold"].source == "hold"
    low = add(queue, 9, "allow", mean_logprob=-2.0)
    assert low.source == "low_confidence" and low.confidence == -2.0
    item = queue.get(sources["flag"].id)
    assert item.state == "open" and item.version == 1 and item.audit_id == 4 and item.response_id == "chatcmpl-3"
    assert item.prompt[1]["content"].startswith(QUESTION) and item.original == f"{ANSWER}（3）"
    assert [i.id for i in queue.list()] == [sources["flag"].id, sources["hold"].id, low.id]


def test_sampling_is_deterministic_and_near_the_rate():
    ids = [f"req-{i}" for i in range(4000)]
    picked = [i for i in ids if sampled(i, 0.1)]
    assert 320 <= len(picked) <= 480
    assert picked == [i for i in ids if sampled(i, 0.1)] and not any(sampled(i, 0.0) for i in ids)


def test_sampled_traffic_is_queued(tmp_path):
    audit = AuditLog.open(tmp_path / "home")
    q = ReviewQueue(audit.engine, audit=audit, sample_rate=0.5)
    items = [q.consider(audit.append(exchange(i))) for i in range(40)]
    expected = [sampled(f"req-{i}", 0.5) for i in range(40)]
    assert [it is not None for it in items] == expected and all(it.source == "sample" for it in items if it)


def test_transitions_and_their_record(queue):
    a, b, c = (add(queue, i) for i in range(3))
    queue.approve(a.id, "alice", "fine as is")
    queue.correct(b.id, "bob", RIGHT, "wrong period")
    queue.reject(c.id, "carol", "off topic")
    a, b, c = (queue.get(x.id) for x in (a, b, c))
    assert (a.state, a.reviewer, a.reason, a.answer) == ("approved", "alice", "fine as is", a.original)
    assert (b.state, b.corrected, b.answer, b.version) == ("corrected", RIGHT, RIGHT, 2)
    assert c.state == "rejected" and c.answer is None and c.reviewed_at is not None
    for act in (lambda: queue.approve(b.id, "dave"), lambda: queue.reject(a.id, "dave"), lambda: queue.correct(c.id, "dave", "x")):
        with pytest.raises(ReviewConflict, match="already"):
            act()
    with pytest.raises(KogataError, match="reviewer"):
        queue.approve(add(queue, 5).id, " ")
    with pytest.raises(KogataError, match="right answer"):
        queue.correct(add(queue, 6).id, "bob", "  ")
    actions = [e.record for e in queue.audit.iter_rows() if (e.record.endpoint or "").startswith("review.")]
    assert [(r.endpoint, r.key_name) for r in actions] == [("review.approved", "alice"), ("review.corrected", "bob"), ("review.rejected", "carol")]
    assert actions[1].output == RIGHT and queue.audit.verify().ok


def test_two_reviewers_on_the_same_item(queue):
    item = add(queue, 1)
    seen = queue.get(item.id).version  # both reviewers loaded version 1
    queue.correct(item.id, "alice", RIGHT, version=seen)
    with pytest.raises(ReviewConflict, match="changed by someone else.*corrected by alice"):
        queue.approve(item.id, "bob", version=seen)
    assert queue.get(item.id).corrected == RIGHT


def test_two_reviewers_at_once_in_threads(tmp_path):
    home = tmp_path / "home"
    audit = AuditLog.open(home)
    item = ReviewQueue(audit.engine, audit=audit).consider(audit.append(exchange(1, "hold")))
    queues = [ReviewQueue.open(home) for _ in range(2)]  # two reviewers, two connections
    start = threading.Barrier(2)
    results: list[str] = []

    def act(q: ReviewQueue, name: str) -> None:
        start.wait(timeout=30)
        try:
            (q.correct(item.id, name, RIGHT + name, version=1) if name == "alice" else q.approve(item.id, name, version=1))
            results.append(f"won:{name}")
        except ReviewConflict:
            results.append(f"conflict:{name}")

    threads = [threading.Thread(target=act, args=(q, n)) for q, n in zip(queues, ("alice", "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.split(":")[0] for r in results) == ["conflict", "won"], results
    winner = next(r.split(":")[1] for r in results if r.startswith("won"))
    final = queues[0].get(item.id)
    assert final.reviewer == winner and final.version == 2
    # and the held answer goes out once, however many pollers ask
    released: list[str] = []
    errors: list[Exception] = []

    def poll(q: ReviewQueue) -> None:
        try:
            released.append(q.release(item.id))
        except ReviewConflict as exc:
            errors.append(exc)

    pollers = [threading.Thread(target=poll, args=(queues[i % 2],)) for i in range(4)]
    for t in pollers:
        t.start()
    for t in pollers:
        t.join(timeout=60)
    assert len(released) == 1 and len(errors) == 3
    assert released[0] == (final.corrected if final.state == "corrected" else final.original)
    assert sum(1 for e in audit.iter_rows() if e.record.endpoint == "review.release") == 1 and audit.verify().ok


def test_hold_release_rules(queue):
    held = add(queue, 1, "hold")
    with pytest.raises(ReviewPending):
        queue.release(held.id)
    queue.correct(held.id, "alice", RIGHT)
    assert queue.release(held.id) == RIGHT
    with pytest.raises(ReviewConflict, match="already released"):
        queue.release(held.id)
    rejected = add(queue, 2, "hold")
    queue.reject(rejected.id, "alice")
    with pytest.raises(KogataError, match="rejected"):
        queue.release(rejected.id)
    flagged = add(queue, 3, "flag")
    queue.approve(flagged.id, "alice")
    with pytest.raises(KogataError, match="not a held answer"):
        queue.release(flagged.id)
    release_rows = [e for e in queue.audit.iter_rows() if e.record.endpoint == "review.release"]
    assert len(release_rows) == 1 and release_rows[0].record.output == RIGHT


def test_feedback(queue):
    queue.audit.append(exchange(1))  # allowed: no item yet
    item = queue.record_feedback("chatcmpl-1", -1, "期間が違います")
    assert (item.source, item.rating, item.comment, item.original) == ("feedback", -1, "期間が違います", f"{ANSWER}（1）")
    flagged = add(queue, 2)
    attached = queue.record_feedback("chatcmpl-2", 1)
    assert attached.id == flagged.id and attached.rating == 1 and attached.version == 2
    with pytest.raises(UnknownResponse):
        queue.record_feedback("chatcmpl-404", -1)
    with pytest.raises(KogataError, match="rating"):
        queue.record_feedback("chatcmpl-1", 5)


def test_export_is_read_by_data_prepare_and_lora(queue, tmp_path):
    from kogata.data import PrepareConfig, load_dataset, prepare
    from kogata.data.normalize import normalize_text
    from kogata.methods.lora.data import read_records
    from kogata.ops.review.export import export_reviewed

    corrected, approved, rejected, still_open = (add(queue, i) for i in range(4))
    queue.correct(corrected.id, "alice", RIGHT)
    queue.approve(approved.id, "bob")
    queue.reject(rejected.id, "carol")
    out = tmp_path / "export"
    manifest = export_reviewed(queue, out)
    assert manifest["files"] == {"chat.jsonl": 2, "preferences.jsonl": 1}
    chat = [json.loads(x) for x in (out / "chat.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [c["response"] for c in chat] == [RIGHT, f"{ANSWER}（1）"]
    assert chat[0]["messages"][-1] == {"role": "assistant", "content": RIGHT} and chat[0]["system"] == "あなたはサポート担当です。"
    pair = json.loads((out / "preferences.jsonl").read_text(encoding="utf-8"))
    assert (pair["chosen"], pair["rejected"]) == (RIGHT, f"{ANSWER}（0）") and pair["prompt"].startswith(QUESTION)
    # the chat file is a dataset `kogata data prepare` takes, and its output trains with lora
    ds = tmp_path / "dataset"
    m = prepare([out / "chat.jsonl"], ds, PrepareConfig(near_dup_threshold=1.0, min_chars=10))
    assert m["records"] == 2
    rows = load_dataset(ds)
    nfkc = normalize_text  # prepare normalises text (NFKC: full-width brackets become ASCII)
    assert {r["response"] for r in rows} == {nfkc(RIGHT), nfkc(f"{ANSWER}（1）")} and all(r["prompt"].startswith(nfkc(QUESTION)) for r in rows)
    recs = read_records([ds / "data.jsonl"])
    assert [r.answer for r in recs] == [r["response"] for r in rows] and recs[0].user.startswith(nfkc(QUESTION))
    # lora also reads the export directly
    assert [r.answer for r in read_records([out / "chat.jsonl"])] == [RIGHT, f"{ANSWER}（1）"]
    assert export_reviewed(queue, tmp_path / "only", corrections_only=True)["files"]["chat.jsonl"] == 1


def test_cli_review_flow(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("KOGATA_HOME", str(home))
    audit = AuditLog.open(home)
    q = ReviewQueue(audit.engine, audit=audit)
    item = q.consider(audit.append(exchange(1, "flag")))
    code, out, _ = run_cli(capsys, monkeypatch, "review", "list")
    assert code == 0 and "flag" in out and str(item.id) in out
    code, out, _ = run_cli(capsys, monkeypatch, "review", "show", str(item.id))
    assert code == 0 and QUESTION[:10] in out and "version 1" in out
    code, out, err = run_cli(capsys, monkeypatch, "review", "correct", str(item.id), "--text", RIGHT, "--reviewer", "alice", "--reason", "期間")
    assert code == 0, err
    code, out, err = run_cli(capsys, monkeypatch, "review", "approve", str(item.id), "--reviewer", "bob")
    assert code == 2 and "already corrected" in err
    code, out, err = run_cli(capsys, monkeypatch, "review", "export", "--out", str(tmp_path / "exp"))
    assert code == 0 and json.loads((tmp_path / "exp" / "chat.jsonl").read_text(encoding="utf-8"))["response"] == RIGHT
    code, out, err = run_cli(capsys, monkeypatch, "audit", "verify")
    assert code == 0, err
    code, out, err = run_cli(capsys, monkeypatch, "review", "list", "--state", "bogus")
    assert code == 2 and "state" in err


def test_unknown_item(queue):
    with pytest.raises(KogataError, match="does not exist"):
        queue.get(12345)
