"""``kogata improve`` end to end on the tiny llama: review queue → export → curate → LoRA → merge → GGUF Q8_0 →
eval vs production → gates → alias; resume; the bad inputs (no corrections, another base, a damaged export)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.ops.aliases import current_aliases, record_alias
from kogata.ops.improve import ImproveConfig, improve
from kogata.ops.review.export import export_reviewed
from kogata.ops.review.queue import ReviewQueue
from tests.unit._tiny import write_jsonl

ANSWER = "Please call the Sakura support desk."
_WORDS = ("fridge kettle router invoice parcel warranty screen battery cable remote oven printer account password refund "
          "delivery courier receipt manual filter door light noise leak charger update app login coupon address phone "
          "voucher drawer shelf freezer timer display button sensor socket plug lamp heater fan cooler mixer").split()
QUESTIONS = [" ".join(__import__("random").Random(n).sample(_WORDS, 7)).capitalize() + "?" for n in range(60)]
SUITE_ITEM = {"id": "s1", "question": "Where can I find the manual for the SK-R450 fridge?", "answer": "on the website"}


@pytest.fixture()
def world(kogata_home, tiny_llama_dir, tmp_path):
    """A store with tiny (hf) → tiny-q8 (gguf, alias production) and a review queue of corrected answers."""
    from kogata.methods.recipe import run_recipe
    from kogata.methods.registry import MethodContext

    store = Store()
    tiny = import_local(store, tiny_llama_dir, name="tiny", log=lambda m: None)
    q8 = run_recipe(tiny, [{"method": "export-gguf"}, {"method": "quantize", "params": {"type": "Q8_0"}}],
                    MethodContext(store=store, log=lambda m: None), final_name="tiny-q8")[-1]
    record_alias(store.engine, "production", q8.id, by="test", reason="first deploy")
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    write_jsonl(suite_dir / "qa.jsonl", [SUITE_ITEM, {"id": "s2", "question": "How long is the warranty?", "answer": "one year"}])
    (suite_dir / "suite.yaml").write_text(textwrap.dedent("""\
        name: tiny-improve
        version: 1
        language: en
        tasks:
          - name: qa
            type: generate
            data: qa.jsonl
            fields: {question: question, answer: answer}
            prompt: "Q: {question}\\nA:"
            target: "{answer}"
            max_tokens: 8
            metrics: [f1]
        kpis:
          min: {qa.f1: 0.0}
        efficiency: {prompt_tokens: 8, gen_tokens: 4, repeats: 1, warmup: 0, latency_prompts: 1}
        """))
    return store, q8, suite_dir / "suite.yaml"


def _corrections(store: Store, out: Path, art_id: str, n: int, *, extra: list[str] = ()) -> Path:
    queue = ReviewQueue(store.engine)
    for q in [*QUESTIONS[:n], *extra]:
        item = queue.add(source="sample", prompt=[{"role": "user", "content": q}], original="zzz qqq",
                         model_alias="production", artifact_id=art_id)
        queue.correct(item.id, "reviewer", ANSWER)
    export_reviewed(queue, out, corrections_only=True)
    return out


def _cfg(tmp_path: Path, corrections: Path, suite: Path, **kw) -> ImproveConfig:
    lora = {"steps": 30, "rank": 8, "alpha": 16, "lr": 5e-3, "batch_size": 4, "eval_fraction": 0.1,
            "gradient_checkpointing": False, "save_every": 10, "init": "gaussian"}
    return ImproveConfig(corrections=corrections, suite=str(suite), out=tmp_path / "improve", lora=lora,
                         max_tokens=12, threads=1, **kw)


def test_improve_trains_on_corrections_beats_production_and_sets_the_alias(world, tmp_path):
    store, q8, suite = world
    # one correction repeats a suite question: curation must keep it out of training
    export = _corrections(store, tmp_path / "export", q8.id, 55, extra=[SUITE_ITEM["question"]])
    logs: list[str] = []
    doc = improve(_cfg(tmp_path, export, suite), store, log=logs.append)

    cand = store.get(doc["candidate"]["id"])
    assert [s["method"] for s in cand.lineage][-4:] == ["lora", "merge", "export-gguf", "quantize"]
    assert cand.lineage[-1]["config"]["type"] == "Q8_0" and cand.format == "gguf"
    assert doc["float_parent"]["name"] == "tiny"
    assert doc["corrections"]["for_model"] == 56 and doc["corrections"]["heldout"] >= 5
    assert doc["data"]["removed"].get("held_out_overlap", 0) >= 1
    prepared = (tmp_path / "improve" / "data" / "prepared" / "data.jsonl").read_text(encoding="utf-8")
    assert SUITE_ITEM["question"] not in prepared
    held = doc["decision"]["corrections"]
    assert held["value"] > held["baseline"] and held["ci_low"] > 0, held
    assert doc["decision"]["passed"], doc["decision"]["reasons"]
    assert current_aliases(store.engine)["candidate"]["artifact_id"] == cand.id
    assert current_aliases(store.engine)["production"]["artifact_id"] == q8.id  # promotion is a separate step
    assert (tmp_path / "improve" / "eval" / "results.json").is_file()

    # a rerun resumes: nothing is rebuilt or re-evaluated
    n_artifacts = len(store.list())
    logs.clear()
    again = improve(_cfg(tmp_path, export, suite), store, log=logs.append)
    assert again["candidate"]["id"] == cand.id and len(store.list()) == n_artifacts
    assert any("reusing" in m for m in logs) and any("reusing the finished evaluation" in m for m in logs)

    from kogata.report.improve import write_improve_report

    for lang, needle in (("en", "beats production"), ("ja", "上回り")):
        html = write_improve_report(again, tmp_path / f"r.{lang}.html", lang).read_text(encoding="utf-8")
        assert needle in html and cand.name in html


def test_not_promoted_when_the_gain_is_not_shown(world, tmp_path):
    store, q8, suite = world
    export = _corrections(store, tmp_path / "export", q8.id, 55)
    cfg = _cfg(tmp_path, export, suite)
    cfg.lora = {**cfg.lora, "steps": 1, "lr": 1e-6}  # practically no training: nothing to show
    doc = improve(cfg, store, log=lambda m: None)
    assert not doc["decision"]["passed"]
    assert any("held-out corrections" in r for r in doc["decision"]["reasons"])
    assert "candidate" not in current_aliases(store.engine)


def test_refuses_too_few_corrections_and_says_how_many_are_missing(world, tmp_path):
    store, q8, suite = world
    export = _corrections(store, tmp_path / "export", q8.id, 12)
    with pytest.raises(KogataError, match=r"12 approved corrections .* at least 50 \(38 more\)"):
        improve(_cfg(tmp_path, export, suite), store, log=lambda m: None)
    assert "candidate" not in current_aliases(store.engine)


def test_refuses_corrections_of_another_base_model(world, tmp_path, tiny_gemma3_dir):
    store, q8, suite = world
    other = import_local(store, tiny_gemma3_dir, name="other", log=lambda m: None)
    export = _corrections(store, tmp_path / "export", other.id, 55)
    with pytest.raises(KogataError, match=r"answers of other models .* none of tiny-q8's family"):
        improve(_cfg(tmp_path, export, suite), store, log=lambda m: None)


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "chat.jsonl").write_text('{"id": "x", "prompt": "a"\n'), "line 1 is not valid JSON"),
    (lambda d: (d / "manifest.json").unlink(), "is not a review export"),
    (lambda d: (d / "chat.jsonl").write_text((d / "chat.jsonl").read_text().splitlines()[0] + "\n"), "but its manifest says"),
    (lambda d: (d / "chat.jsonl").write_bytes(b'{"id": "\xff"}\n'), "not UTF-8"),
])
def test_a_damaged_export_is_a_one_line_error(world, tmp_path, damage, needle):
    store, q8, suite = world
    export = _corrections(store, tmp_path / "export", q8.id, 55)
    damage(export)
    with pytest.raises(KogataError, match=needle):
        improve(_cfg(tmp_path, export, suite), store, log=lambda m: None)
    assert "candidate" not in current_aliases(store.engine)


def test_cli_exit_codes(world, tmp_path, capsys, monkeypatch):
    from tests.cli_helpers import run_cli

    store, q8, suite = world
    export = _corrections(store, tmp_path / "export", q8.id, 3)
    code, out, err = run_cli(capsys, monkeypatch, "improve", str(export), "--suite", str(suite), "--out", str(tmp_path / "o"))
    assert code == 2 and "(47 more)" in err and len(err.strip().splitlines()) == 1


def test_prepare_exclude_removes_records_repeating_a_held_out_field(tmp_path):
    from kogata.data.prepare import PrepareConfig, prepare

    held = write_jsonl(tmp_path / "held.jsonl", [{"question": "How long is the warranty on the SK-R450?", "answer": "one year"}])
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"prompt": "How long is the warranty on the SK-R450?", "response": "It is two years, see the leaflet."},  # same question
        {"prompt": "how long is the warranty on the sk-r450 ?", "response": "Different answer text here."},  # case/space variant
        {"prompt": "Where do I send a broken kettle for repair?", "response": "To the Osaka service centre."},
    ])
    manifest = prepare([train], tmp_path / "out", PrepareConfig(min_chars=8, exclude=(str(held),)))
    assert manifest["records"] == 1
    removed = [json.loads(x) for x in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in removed) == ["held_out_overlap", "held_out_overlap"]
    with pytest.raises(KogataError, match="--exclude .* does not exist"):
        prepare([train], tmp_path / "out2", PrepareConfig(exclude=(str(tmp_path / "nope.jsonl"),)))
