"""A method reaches `kogata optimize` through its registry entry alone (``search_space=``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kogata.core.errors import KogataError
from kogata.methods.registry import METHODS, register_method, search_spaces
from kogata.methods.search_space import SearchSpace, enabled, params_of
from kogata.optimize.candidates import generate
from kogata.optimize.project import load_project, search_keys


@dataclass
class _SmoothConfig:
    strength: float = 0.5


def _write(tmp_path, search: str, runtime: str = "llamacpp", data: bool = False):
    (tmp_path / "texts.txt").write_text("hello world\n", encoding="utf-8")
    path = tmp_path / "kogata.yaml"
    path.write_text(f"version: 1\nbase: smollm2-135m\nruntime: {runtime}\n" + ("data: [texts.txt]\n" if data else "")
                    + f"search:\n{search}", encoding="utf-8")
    return path


@pytest.fixture
def smooth_method(monkeypatch):
    """A throw-away method declared only in its registration: one value per strength, strongest (cheapest) first."""
    space = SearchSpace(
        key="smooth_weights", family="smooth", effort=2, build_s=5,
        help="weight smoothing: {enabled: auto|true|false, strengths: [0.5]}",
        default={"enabled": False, "strengths": [0.5]},
        values=lambda section, ctx: sorted(section.get("strengths", [0.5]), reverse=True) if enabled(section, ctx) else [],
        steps=lambda v, ctx: [{"method": "smooth-weights", "params": {"strength": v}}],
        label=lambda v: f"smooth {v}",
    )
    monkeypatch.setitem(METHODS, "smooth-weights", None)  # restored after the test, whatever register_method does
    register_method("smooth-weights", _SmoothConfig, input_formats=("hf",), summary="test only", search_space=space)(lambda a, c, x: a)
    return space


def test_a_registered_search_space_is_proposed_with_no_other_edit(tmp_path, smooth_method):
    assert "smooth_weights" in search_keys() and ("smooth-weights", smooth_method) in search_spaces()
    project = load_project(_write(tmp_path, "  quantize: [Q8_0, Q4_0]\n  smooth_weights: {enabled: true, strengths: [0.2, 0.8]}\n"))
    cands = generate(project)
    smooth = [c for c in cands if c.family == "smooth"]
    assert [c.label for c in smooth] == ["smooth 0.8 + Q4_0", "smooth 0.2 + Q4_0", "smooth 0.8 + Q8_0", "smooth 0.2 + Q8_0"]
    # its steps run on the float model, then the export the GGUF type needs, then the weight type
    assert smooth[0].steps == [{"method": "smooth-weights", "params": {"strength": 0.8}},
                               {"method": "export-gguf", "params": {"out_type": "f32"}},
                               {"method": "quantize", "params": {"type": "Q4_0"}}]
    # ordered by its declared effort: after plain quantization, among the other effort-2 families
    assert [c.family for c in cands][:3] == ["baseline", "quantize", "quantize"]
    assert all(c.build_estimate_s() == 5 for c in smooth)
    # its default (off) keeps it out, and the same project without the method would reject the key
    assert not [c for c in generate(load_project(_write(tmp_path, "  quantize: [Q4_0]\n"))) if c.family == "smooth"]


def test_unregistered_key_is_a_typo(tmp_path):
    with pytest.raises(KogataError, match="smooth_weights"):
        load_project(_write(tmp_path, "  smooth_weights: {enabled: true}\n"))


def test_declarations_check_their_sections_at_load(tmp_path):
    # quantize declares its GGUF and torch types; trim-vocab its keep-lists (a typo fails before any model work)
    with pytest.raises(KogataError, match="int8-dynamic"):
        load_project(_write(tmp_path, "  quantize: [int8-dynamic]\n"))
    with pytest.raises(KogataError, match="hiragna"):
        load_project(_write(tmp_path, "  trim_vocab: {enabled: true, keep: [hiragna]}\n"))
    search = "  quantize: int8-dynamic\n  trim_vocab: {enabled: auto, keep: [hiragana]}\n  lora: {enabled: false}\n"
    torch = load_project(_write(tmp_path, search, runtime="torch", data=True))
    cands = generate(torch)
    assert [c.label for c in cands] == ["baseline (float)", "int8-dynamic", "trim-vocab + int8-dynamic"]
    assert cands[0].steps == [] and cands[2].steps == [{"method": "trim-vocab", "params": {"heldout_target": 1.0, "keep": ["hiragana"]}},
                                                       {"method": "quantize", "params": {"type": "int8-dynamic"}}]
    assert cands[2].keep_ratio is None  # trimmed size is unknown until built


def test_every_builtin_declaration_is_complete():
    keys = search_keys()
    assert {"quantize", "trim_vocab", "lora", "prune_depth"} <= set(keys)
    for name, space in search_spaces():
        assert space.role in ("weights", "transform") and space.help and name in METHODS
        assert params_of({"enabled": True, "a": 1}) == {"a": 1}


def test_lora_and_prune_depth_declare_their_search_in_their_own_modules():
    # the declaration is the registry entry its method module makes; optimize/ only reads the registry
    from kogata.methods.lora.method import LORA_SPACE
    from kogata.methods.prune.method import PRUNE_DEPTH_SPACE
    from kogata.methods.registry import get_method
    from kogata.optimize.space import spaces

    assert get_method("lora").search_space is LORA_SPACE and get_method("prune-depth").search_space is PRUNE_DEPTH_SPACE
    assert spaces()["lora"] is LORA_SPACE and spaces()["prune_depth"] is PRUNE_DEPTH_SPACE


def test_lora_and_prune_depth_candidates(tmp_path):
    search = ("  quantize: [Q8_0]\n  trim_vocab: {enabled: false}\n  lora: {enabled: true, max_minutes: 3}\n"
              "  prune_depth: {enabled: true, keep_ratios: [0.5], distill_minutes: 2}\n")
    cands = generate(load_project(_write(tmp_path, search, data=True)))
    assert [c.label for c in cands] == ["baseline (float)", "Q8_0", "LoRA + Q8_0", "prune 50% + distill + Q8_0"]
    lora, prune = cands[2], cands[3]
    assert lora.steps[:2] == [{"method": "lora", "params": {"max_minutes": 3}}, {"method": "merge", "params": {}}]
    assert (lora.family, lora.extra_minutes, lora.keep_ratio) == ("lora", 3.0, 1.0)
    assert prune.steps[:2] == [{"method": "prune-depth", "params": {"target_ratio": 0.5}},
                               {"method": "distill", "params": {"teacher": "smollm2-135m", "max_minutes": 2.0}}]
    assert (prune.family, prune.extra_minutes, prune.keep_ratio) == ("prune", 2.0, 0.5)
    with pytest.raises(KogataError, match="keep_ratios"):
        load_project(_write(tmp_path, "  prune_depth: {enabled: true, keep_ratios: [1.5]}\n"))


def test_calibrated_quantization_candidates_calibrate_on_the_project_data(tmp_path):
    search = "  quantize: [Q4_0, Q4_0+imatrix, IQ4_XS+imatrix]\n  trim_vocab: {enabled: false}\n  lora: {enabled: false}\n"
    project = load_project(_write(tmp_path, search, data=True))
    cands = {c.label: c for c in generate(project)}
    assert set(cands) == {"baseline (float)", "Q4_0", "Q4_0+imatrix", "IQ4_XS+imatrix"}
    step = cands["Q4_0+imatrix"].steps[-1]
    assert step["method"] == "quantize" and step["params"]["type"] == "Q4_0"
    assert step["params"] == {"type": "Q4_0", "calibration": str((tmp_path / "texts.txt").resolve())}
    assert cands["Q4_0"].steps[-1]["params"] == {"type": "Q4_0"}
    assert [c["method"] for c in cands["IQ4_XS+imatrix"].steps] == ["export-gguf", "quantize"]
    order = [c.label for c in generate(project)]
    assert order.index("IQ4_XS+imatrix") < order.index("Q4_0")  # fewer bits: tried first (cheapest first)
    with pytest.raises(KogataError, match="has none"):
        load_project(_write(tmp_path, "  quantize: [Q4_0+imatrix]\n  trim_vocab: {enabled: false}\n"))
    with pytest.raises(KogataError, match="IQ types need an importance matrix"):
        load_project(_write(tmp_path, "  quantize: [IQ4_XS]\n", data=True))
