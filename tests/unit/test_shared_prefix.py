"""The torch runtime's shared-context scoring (multiple-choice choices run on copies of the context's KV cache)
gives the same log-likelihoods and greedy flags as scoring every request on its own."""

from __future__ import annotations

import pytest

from kogata.runtimes.torch_runtime import TorchRuntime
from tests.tiny_models import make_tiny_model


@pytest.fixture(scope="module", params=["llama", "gemma3", "qwen2"])
def runtime(request, tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)
    return TorchRuntime(folder, batch_size=3)


def _pairs(rt: TorchRuntime, context: str, choices: list[str]):
    return [rt.encode_pair(context, c) for c in choices]


@pytest.mark.parametrize("repeat", [1, 6])  # repeat 6: a context longer than gemma3's sliding window of 8
def test_shared_context_equals_independent_scoring(runtime, repeat):
    context = "Customer: the refrigerator SK-R450 is broken. " * repeat + "This message is about"
    choices = [" a delivery", " returns within 30 days", " a", " the SakuraHome app and try again", " 冷蔵庫"]
    pairs = _pairs(runtime, context, choices)
    assert len({tuple(ctx) for ctx, _ in pairs}) == 1 and len(pairs[0][0]) >= 4
    shared = runtime.score_tokens(pairs)  # 5 choices, batch_size 3: two chunks on the same context
    alone = [runtime.score_tokens([p])[0] for p in pairs]  # a single request never takes the shared path
    for (lp_s, greedy_s), (lp_a, greedy_a) in zip(shared, alone, strict=True):
        assert lp_s == pytest.approx(lp_a, rel=1e-5, abs=1e-5)
        assert greedy_s == greedy_a


def test_mixed_requests_keep_their_order(runtime):
    pairs = _pairs(runtime, "Shipping takes three to five", [" business days.", " weeks"])
    pairs += _pairs(runtime, "お問い合わせ", ["ありがとうございます。"])
    pairs += _pairs(runtime, "Please restart the", [" app", " router", " fridge"])
    together = runtime.score_tokens(pairs)
    alone = [runtime.score_tokens([p])[0] for p in pairs]
    assert [r[0] for r in together] == pytest.approx([r[0] for r in alone], rel=1e-5, abs=1e-5)
