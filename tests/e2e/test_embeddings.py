"""``/v1/embeddings`` with the official client: a server holding a language model and a tiny sentence embedder
(``models:`` in serve.yaml); vectors equal the ``embedder`` runtime's, as float and as base64 (the client's
default), usage counts the embedder's tokens, Japanese included."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.e2e.conftest import ServerProcess

openai = pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")

TEXTS = ["Where is my parcel?", "冷蔵庫の保証期間は一年間です。"]


@pytest.fixture(scope="module")
def embedder_art(tmp_path_factory, store):
    from kogata.artifacts.importer import import_local
    from tests.unit.test_embedder import make_tiny_sentence_transformer

    folder = make_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st") / "st")
    return import_local(store, folder, name="tiny-st", log=lambda m: None)


@pytest.fixture(scope="module")
def both(serve_home, embedder_art):
    cfg = serve_home / "serve-embed.yaml"
    cfg.write_text("models:\n  - artifact: tiny\n    aliases: [prod]\n  - artifact: tiny-st\n    aliases: [embed]\nctx: 256\n",
                   encoding="utf-8")
    srv = ServerProcess(serve_home, ["--config", str(cfg)], log_name="embed").start()
    yield srv
    srv.stop()


def test_embeddings_match_the_runtime(both, embedder_art):
    from kogata.runtimes import open_runtime

    rt = open_runtime("embedder", embedder_art)
    try:
        expected = np.asarray(rt.embed(TEXTS), dtype=np.float32)
        tokens = sum(len(rt.tokenize(t)) for t in TEXTS)
    finally:
        rt.close()
    c = openai.OpenAI(base_url=both.url + "/v1", api_key="x", max_retries=0)
    for fmt in (None, "float", "base64"):  # None: the client asks for base64 itself and decodes it
        kw = {"encoding_format": fmt} if fmt else {}
        r = c.embeddings.create(model="embed", input=TEXTS, **kw)
        if fmt == "base64":
            got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in r.data])
        else:
            got = np.asarray([d.embedding for d in r.data], dtype=np.float32)
        assert got.shape == expected.shape
        assert np.allclose(got, expected, atol=1e-6)
        assert r.usage.prompt_tokens == tokens and r.model == "embed"
    models = {m.id: m.model_extra["kind"] for m in c.models.list().data}
    assert models == {"prod": "lm", "embed": "embedder"}
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="embed", prompt="hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        c.embeddings.create(model="embed", input=TEXTS, dimensions=7)
    assert c.completions.create(model="prod", prompt="hi", max_tokens=2).usage.completion_tokens >= 1
