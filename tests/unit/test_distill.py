"""distill on tiny models: it reduces the KL to the teacher, resumes after a kill to the same weights, keeps to a
time budget, caches the teacher once, and refuses bad input with one-line errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import kogata.methods._shared.training as train_loop
from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods.distill.method import teacher_layer_map
from kogata.methods.distill.objective import topk_divergence
from kogata.methods.registry import MethodContext, apply_method
from tests.tiny_models import CORPUS, make_tokenizer


class Killed(Exception):
    """A simulated kill (SIGKILL cannot be caught in-process; this stops the loop at the same point)."""


FAST = {"teacher": "teacher", "block_size": 16, "batch_size": 2, "lr": 1e-3, "warmup": 0}


def _texts(path: Path, n: int = 40) -> Path:
    rng = random.Random(0)
    path.write_text("\n\n".join(" ".join(rng.choice(CORPUS) for _ in range(3)) for _ in range(n)), encoding="utf-8")
    return path


def _store(home: Path, teacher_dir: Path) -> Store:
    s = Store(home)
    import_local(s, teacher_dir, name="teacher", log=lambda m: None)
    apply_method(s.get("teacher"), "prune-depth", {"layers": [0]}, MethodContext(store=s, log=lambda m: None, out_name="student"))
    return s


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    """The tiny llama with an untied output layer 8× its embeddings: peaked distributions worth imitating."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("peaked")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.config.tie_word_embeddings = False
    peaked = AutoModelForCausalLM.from_config(model.config)
    peaked.load_state_dict(model.state_dict())
    with torch.no_grad():
        peaked.lm_head.weight.copy_(8.0 * model.model.embed_tokens.weight)
    peaked.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One thread (load_torch applies settings' count); what set_threads changes is restored afterwards."""
    import kogata.core.settings as settings

    monkeypatch.setattr(settings, "_threads", 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KOGATA_THREADS"):
        monkeypatch.setenv(var, "1")


@pytest.fixture()
def store(kogata_home, teacher_dir):
    return _store(kogata_home, teacher_dir)


@pytest.fixture()
def data(tmp_path):
    return _texts(tmp_path / "train.txt")


def _distill(store: Store, data: Path, name: str = "student", out: str | None = None, log=lambda m: None, **params):
    ctx = MethodContext(store=store, data=[data], log=log, allow_reuse=False, out_name=out)
    return apply_method(store.get(name), "distill", {**FAST, **params}, ctx)


def _weights(art) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(art.path / "model.safetensors")


def _full_kl(teacher_dir: Path, student_dir: Path, data: Path) -> float:
    """KL(teacher ‖ student) over the full vocabulary on the training text, computed independently."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teacher_dir)
    ids = torch.tensor(tok(data.read_text())["input_ids"][:256]).reshape(16, 16)  # the training block size
    with torch.no_grad():
        lp = torch.log_softmax(AutoModelForCausalLM.from_pretrained(teacher_dir)(ids).logits, -1)
        lq = torch.log_softmax(AutoModelForCausalLM.from_pretrained(student_dir)(ids).logits, -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def test_distill_reduces_kl_and_records_the_curve(store, data):
    student = store.get("student")
    art = _distill(store, data, alpha=0.0, steps=12, eval_every=4, topk=300)  # top-300 = the whole vocabulary
    before = _full_kl(store.get("teacher").path, student.path, data)
    after = _full_kl(store.get("teacher").path, art.path, data)
    assert after < 0.8 * before, (before, after)
    step = art.lineage[-1]
    assert step["method"] == "distill" and art.parent == student.id
    m = step["metrics"]
    assert [h[0] for h in m["history"]] == [0, 4, 8, 12] and m["history"][0][1] is None
    assert m["history"][-1][2] < m["history"][0][2]  # held-out loss went down
    assert m["stopped_by"] == "steps" and m["steps_done"] == 12
    assert m["best_step"] == min(m["history"], key=lambda h: h[2])[0]  # the artifact holds the best weights
    assert m["teacher_layers"] is None and m["world_size"] == 1
    assert not (Path(m["run_dir"]) / "checkpoint.pt").exists()  # resume files are dropped once the artifact exists
    from transformers import AutoModelForCausalLM  # plain transformers loads the result

    assert AutoModelForCausalLM.from_pretrained(art.path).config.num_hidden_layers == 1


def test_resume_after_a_kill_gives_the_same_weights(tmp_path, teacher_dir, data, monkeypatch):
    params = dict(alpha=0.5, hidden_weight=0.5, steps=5, eval_every=2, checkpoint_every=2)
    whole = _distill(_store(tmp_path / "a", teacher_dir), data, **params)
    assert whole.lineage[-1]["metrics"]["teacher_layers"] == [1]  # from the prune-depth lineage step

    def kill(step: int) -> None:
        if step == 3:
            raise Killed

    second = _store(tmp_path / "b", teacher_dir)
    monkeypatch.setattr(train_loop, "on_step", kill)
    with pytest.raises(Killed):
        _distill(second, data, **params)
    monkeypatch.undo()
    resumed = _distill(second, data, **params)
    assert resumed.lineage[-1]["metrics"]["resumed_from"] == 2
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.lineage[-1]["metrics"]["history"] == resumed.lineage[-1]["metrics"]["history"]


def test_corrupted_checkpoint_names_the_file(store, data, monkeypatch):
    def kill(step: int) -> None:
        if step == 2:
            raise Killed

    monkeypatch.setattr(train_loop, "on_step", kill)
    with pytest.raises(Killed):
        _distill(store, data, steps=4, checkpoint_every=2)
    monkeypatch.undo()
    ckpt = next((store.home / "runs").glob("distill-*/checkpoint.pt"))
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(KogataError) as err:
        _distill(store, data, steps=4, checkpoint_every=2)
    assert str(ckpt) in str(err.value) and "resume=false" in err.value.hint
    art = _distill(store, data, steps=4, checkpoint_every=2, resume=False)
    assert art.lineage[-1]["metrics"]["resumed_from"] is None


def test_time_budget_stops_cleanly_and_teacher_cache_is_reused(store, data):
    art = _distill(store, data, steps=1000, max_minutes=1e-4, eval_every=500, out="timed")
    m = art.lineage[-1]["metrics"]
    assert m["stopped_by"] == "time" and m["steps_done"] < 1000
    assert [h[0] for h in m["history"]] == [0, m["steps_done"]]
    caches = list((store.home / "cache" / "distill-topk").iterdir())
    assert len(caches) == 1 and 0 < m["teacher_topk_mass"] <= 1
    _distill(store, data, steps=1, out="again")  # same teacher, data, block size and top-k: same cache
    assert list((store.home / "cache" / "distill-topk").iterdir()) == caches


def test_plain_fine_tuning_needs_no_teacher_cache(store, data):
    art = _distill(store, data, alpha=1.0, steps=2)
    assert art.lineage[-1]["metrics"]["teacher_topk_mass"] is None
    assert not (store.home / "cache" / "distill-topk").exists()


def test_topk_divergence():
    torch.manual_seed(0)
    t, s = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    lp, lq = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    assert topk_divergence(lp, s, 1.0, "forward") == pytest.approx(float((lp.exp() * (lp - lq)).sum(-1).mean()), rel=1e-5)
    assert topk_divergence(lp, s, 1.0, "reverse") == pytest.approx(float((lq.exp() * (lq - lp)).sum(-1).mean()), rel=1e-5)
    for kind in ("forward", "reverse", "jsd"):
        assert float(topk_divergence(lp, t, 2.0, kind)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(topk_divergence(lp, s, 1.0, "jsd")) < 0.694  # bounded by ln 2
    # with a "rest" bucket: exact for k = vocabulary, and a lower bound of the full KL for k < vocabulary
    full = float((lp.exp() * (lp - lq)).sum(-1).mean())
    lse = torch.logsumexp(s, -1)
    assert float(topk_divergence(lp, s, 1.0, "forward", lse)) == pytest.approx(full, rel=1e-4)
    v, i = lp.topk(3, -1)
    coarse = float(topk_divergence(v, s.gather(-1, i), 1.0, "forward", lse))
    assert 0 < coarse <= full


def test_teacher_layer_map_from_lineage():
    base = [{"method": "import"}]
    lineage = base + [{"method": "prune-depth", "metrics": {"kept_layers": [0, 2, 3, 5]}},
                      {"method": "prune-depth", "metrics": {"kept_layers": [0, 1, 3]}}]
    assert teacher_layer_map(lineage, base, 3, 6, None) == [0, 2, 5]
    assert teacher_layer_map([{"method": "other"}], base, 6, 6, None) == list(range(6))
    with pytest.raises(KogataError, match="cannot tell which teacher block"):
        teacher_layer_map([{"method": "other"}], base, 3, 6, None)
    with pytest.raises(KogataError, match="does not fit"):
        teacher_layer_map(lineage, base, 3, 6, [0, 7, 8])


@pytest.mark.parametrize(
    "params,needle",
    [
        ({"alpha": 2}, "alpha must be in [0, 1]"),
        ({"teacher": ""}, "no teacher given"),
        ({"teacher": "nope"}, "no artifact named 'nope'"),
        ({"block_size": 4096}, "smaller than one batch"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"max_minutes": 0}, "max_minutes must be positive"),
    ],
)
def test_bad_input(store, data, params, needle):
    with pytest.raises(KogataError) as err:
        _distill(store, data, **params)
    assert needle in str(err.value) and err.value.hint


def test_mismatched_tokenizers(store, data, tmp_path, tiny_llama_dir):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_llama_dir, other)
    make_tokenizer(vocab_size=280).save_pretrained(other)
    import_local(store, other, name="other", log=lambda m: None)
    with pytest.raises(KogataError) as err:
        _distill(store, data, teacher="other")
    assert "tokenizers differ" in str(err.value) and "cross-tokenizer" in err.value.hint


def test_cli(store, data, capsys, monkeypatch):
    from tests.cli_helpers import run_cli

    code, _, err = run_cli(capsys, monkeypatch, "compress", "student", "-m", "distill", "-s", "teacher=teacher", "-s", "steps=2",
                           "-s", "block_size=16", "-s", "batch_size=2", "-s", "kl=jsd", "--data", str(data), "-o", "kd")
    assert code == 0, err
    assert store.get("kd").lineage[-1]["config"]["kl"] == "jsd"
    code, _, err = run_cli(capsys, monkeypatch, "compress", "student", "-m", "distill", "-s", "teacher=teacher", "-s", "kl=sideways",
                           "--data", str(data))
    assert code == 2 and "kl='sideways' is not allowed" in err


def test_teacher_generated_text_joins_the_data(store, data, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The refrigerator\nShipping takes\n\nPlease restart\n", encoding="utf-8")
    first: list[str] = []
    art = _distill(store, data, steps=1, gen_prompts_file=str(prompts), gen_tokens=8, out="gen", log=first.append)
    m = art.lineage[-1]["metrics"]
    assert m["teacher_samples"] == 3 and m["gen_seconds"] >= 0  # no claim on how long generation took
    assert any("sampling 8 tokens from the teacher for each of 3 prompts" in line for line in first)
    gen = list((store.home / "cache" / "distill-gen").iterdir())
    assert len(gen) == 1 and all(t.startswith(("The refrigerator", "Shipping takes", "Please restart"))
                                 for t in json.loads(gen[0].read_text())["texts"])
    second: list[str] = []
    again = _distill(store, data, steps=2, gen_prompts_file=str(prompts), gen_tokens=8, out="gen2", log=second.append)
    assert again.lineage[-1]["metrics"]["gen_seconds"] == 0  # cached samples: the teacher did not generate again
    assert again.lineage[-1]["metrics"]["teacher_samples"] == 3 and not any("sampling" in line for line in second)
    assert list((store.home / "cache" / "distill-gen").iterdir()) == gen


def test_recipe_prune_distill_export_quantize(store, data, tmp_path, capsys, monkeypatch):
    """`kogata compress --recipe`: prune-depth → distill → export-gguf → quantize gives a deployable GGUF whose
    lineage holds every step (the teacher named by artifact name inside the recipe)."""
    from tests.cli_helpers import run_cli

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "version: 1\nsteps:\n  - method: prune-depth\n    params: {layers: [1]}\n"
        "  - method: distill\n    params: {teacher: teacher, steps: 3, block_size: 16, batch_size: 2, lr: 0.001, warmup: 0}\n"
        "  - method: export-gguf\n  - method: quantize\n    params: {type: Q8_0}\n", encoding="utf-8")
    code, _, err = run_cli(capsys, monkeypatch, "compress", "teacher", "--recipe", str(recipe), "--data", str(data), "--out", "small-q8")
    assert code == 0, err
    art = Store().get("small-q8")
    assert art.format == "gguf"
    assert [s["method"] for s in art.lineage] == ["import", "prune-depth", "distill", "export-gguf", "quantize"]
    assert art.lineage[2]["metrics"]["steps_done"] == 3
