"""Our multiple-choice and perplexity scores equal lm-evaluation-harness's HF backend on the same tiny model.

The same local data is declared twice: as a kogata suite and as lm-eval YAML task configs
(``dataset_path: json`` + ``data_files``) registered through ``TaskManager(include_path=...)``.
Both sides use the model's float32 weights, a 48-token context (so long documents use several rolling
windows) and zero-shot prompts.
"""

from __future__ import annotations

import json
import math

import pytest

import kogata.core.settings as settings
from kogata.eval.quality import evaluate_quality
from kogata.eval.suite import load_suite
from kogata.runtimes import open_runtime
from kogata.runtimes.scoring import rolling_windows
from tests.unit._tiny import DOCS, INTENTS, hf_artifact, write_jsonl

lm_eval = pytest.importorskip("lm_eval")

MAX_LEN = 48
CHOICES = [" billing", " shipping", " returns", " technical", " account", " 請求"]
MC_ROWS = [dict(r, label=CHOICES.index(" " + r["label"])) for r in INTENTS] + [
    {"id": "j1", "text": "請求書が二重に届きました。", "label": 5},
    {"id": "j2", "text": "荷物がまだ届きません。", "label": 1},
    {"id": "j3", "text": "アプリが起動しません。", "label": 3},
]
PPL_ROWS = [{"id": f"d{i}", "text": t} for i, t in enumerate(DOCS + ["Short one.", "Returns  are\taccepted within 30 days.\nThank you!"])]

SUITE = f"""\
name: crosscheck
seed: 1
tasks:
  - name: mc
    type: multiple_choice
    data: mc.jsonl
    fields: {{text: text, label: label}}
    prompt: "Customer message: {{text}}\\nTopic:"
    choices: {json.dumps(CHOICES, ensure_ascii=False)}
    label: "{{label}}"
  - name: ppl
    type: perplexity
    data: ppl.jsonl
"""

LM_EVAL_MC = """\
task: kogata_xc_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Customer message: {{{{text}}}}\\nTopic:"
doc_to_choice: {choices}
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
"""

LM_EVAL_PPL = """\
task: kogata_xc_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("crosscheck")
    write_jsonl(root / "mc.jsonl", MC_ROWS)
    write_jsonl(root / "ppl.jsonl", PPL_ROWS)
    (root / "suite.yaml").write_text(SUITE, encoding="utf-8")
    tasks_dir = root / "lm_eval_tasks"
    tasks_dir.mkdir()
    (tasks_dir / "mc.yaml").write_text(
        LM_EVAL_MC.format(data=root / "mc.jsonl", choices=json.dumps(CHOICES, ensure_ascii=False)), encoding="utf-8"
    )
    (tasks_dir / "ppl.yaml").write_text(LM_EVAL_PPL.format(data=root / "ppl.jsonl"), encoding="utf-8")

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    theirs = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_llama_dir},dtype=float32,max_length={MAX_LEN}",
        tasks=["kogata_xc_mc", "kogata_xc_ppl"],
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
        batch_size=4,
        device="cpu",
        log_samples=True,
        bootstrap_iters=0,
    )
    settings.set_threads(1)
    runtime = open_runtime("torch", hf_artifact(tiny_llama_dir), max_length=MAX_LEN, batch_size=4)
    try:
        ours = evaluate_quality(runtime, load_suite(root / "suite.yaml"))
        tokens = {r["id"]: runtime.encode(r["text"], add_special_tokens=False) for r in PPL_ROWS}
    finally:
        runtime.close()
    return theirs, ours, tokens


def _samples(theirs, task):
    return sorted(theirs["samples"][task], key=lambda s: s["doc_id"])


def test_multiple_choice_equals_lm_eval(setup):
    theirs, ours, _ = setup
    res = theirs["results"]["kogata_xc_mc"]
    assert ours["mc"]["n"] == len(MC_ROWS)
    assert ours["mc"]["metrics"]["acc"]["value"] == res["acc,none"]
    assert ours["mc"]["metrics"]["acc_norm"]["value"] == res["acc_norm,none"]
    for sample, mine in zip(_samples(theirs, "kogata_xc_mc"), ours["mc"]["samples"], strict=True):
        their_lls = [float(r[0]) for r in sample["filtered_resps"]]
        assert mine["logprobs"] == pytest.approx(their_lls, abs=1e-4)
        assert mine["score"] == {"acc": sample["acc"], "acc_norm": sample["acc_norm"]}


def test_perplexity_equals_lm_eval(setup):
    theirs, ours, tokens = setup
    res = theirs["results"]["kogata_xc_ppl"]
    mine = ours["ppl"]["metrics"]
    assert mine["word_perplexity"]["value"] == pytest.approx(res["word_perplexity,none"], rel=1e-5)
    assert mine["bits_per_byte"]["value"] == pytest.approx(res["bits_per_byte,none"], rel=1e-5)
    their_lls = [float(s["filtered_resps"][0]) for s in _samples(theirs, "kogata_xc_ppl")]
    my_lls = [s["score"]["logprob"] for s in ours["ppl"]["samples"]]
    assert my_lls == pytest.approx(their_lls, abs=1e-4)
    # token perplexity: the same log-likelihood over the number of tokens predicted
    n_tokens = sum(len(t) for t in tokens.values())
    assert mine["token_perplexity"]["value"] == pytest.approx(math.exp(-sum(their_lls) / n_tokens), rel=1e-5)
    assert any(len(t) > 2 * MAX_LEN for t in tokens.values())  # rolling windows were exercised


def test_rolling_windows_equal_lm_eval_utils():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    for n in (1, 5, 6, 7, 23, 40):
        tokens = list(range(10, 10 + n))
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, prefix_token=0, max_seq_len=6, context_len=1)]
        assert list(rolling_windows(tokens, 0, 6)) == [(list(a), list(b)) for a, b in theirs]


# ---- at the default window ----------------------------------------------------------------------------------------
# kogata scores rolling windows of min(model context, 2048) tokens by default; lm-eval's HF backend uses the model's
# context (``max_position_embeddings``). For every model whose context is at most 2048 — the tiny model has 256 —
# the defaults coincide, and so must the numbers. (Longer-context models differ by design; each perplexity result
# records its ``window`` and how many documents were longer than it.)
LONG_DOC = " ".join(DOCS[0::2]) * 6  # several windows of the tiny model's 256-token context


def test_perplexity_equals_lm_eval_at_the_default_window(tmp_path, tiny_llama_dir):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    rows = [{"id": "long", "text": LONG_DOC}] + PPL_ROWS[:2]
    write_jsonl(tmp_path / "ppl.jsonl", rows)
    (tmp_path / "suite.yaml").write_text("name: xc-default\ntasks:\n  - name: ppl\n    type: perplexity\n    data: ppl.jsonl\n",
                                         encoding="utf-8")
    tasks_dir = tmp_path / "lm_eval_tasks"
    tasks_dir.mkdir()
    (tasks_dir / "ppl.yaml").write_text(LM_EVAL_PPL.format(data=tmp_path / "ppl.jsonl"), encoding="utf-8")
    theirs = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_llama_dir},dtype=float32",  # no max_length: lm-eval's default
        tasks=["kogata_xc_ppl"],
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
        batch_size=2,
        device="cpu",
        log_samples=True,
        bootstrap_iters=0,
    )
    settings.set_threads(1)
    runtime = open_runtime("torch", hf_artifact(tiny_llama_dir))  # kogata's defaults
    try:
        ours = evaluate_quality(runtime, load_suite(tmp_path / "suite.yaml"))["ppl"]
        n_long = len(runtime.encode(LONG_DOC, add_special_tokens=False))
    finally:
        runtime.close()
    res = theirs["results"]["kogata_xc_ppl"]
    assert ours["window"] == 256 and n_long > 2 * ours["window"] and ours["docs_over_window"] == 1
    assert ours["metrics"]["word_perplexity"]["value"] == pytest.approx(res["word_perplexity,none"], rel=1e-5)
    assert ours["metrics"]["bits_per_byte"]["value"] == pytest.approx(res["bits_per_byte,none"], rel=1e-5)
    their_lls = [float(s["filtered_resps"][0]) for s in _samples(theirs, "kogata_xc_ppl")]
    assert ours["per_item"]["logprob"] == pytest.approx(their_lls, abs=1e-4)
