"""The ``embedder`` runtime on a tiny random sentence-transformers folder built here (BertModel + WordPiece
tokenizer + modules.json + 1_Pooling): output shape/dtype/norms, pooling checked against transformers
directly, batching, truncation, import into the store, and the kind checks of ``open_runtime``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import kogata.core.settings as settings
from kogata.core.errors import KogataError
from kogata.runtimes import get_runtime_class, open_runtime
from tests.tiny_models import CORPUS
from tests.unit._tiny import hf_artifact

pytest.importorskip("sentence_transformers")

DIM = 32
MAX_SEQ = 24
TEXTS = ["Where is my parcel?", "Shipping takes three to five business days.", "冷蔵庫の保証期間は一年間です。", ""]


def make_tiny_sentence_transformer(folder: Path, seed: int = 0) -> Path:
    """A sentence-transformers folder as ``SentenceTransformer.save`` lays it out, with random weights."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    cfg = BertConfig(vocab_size=len(fast), hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=fast.pad_token_id)
    torch.manual_seed(seed)
    folder = Path(folder)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_SEQ, "do_lower_case": False}), encoding="utf-8")
    pooling = {"word_embedding_dimension": DIM, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory) -> Path:
    return make_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


def st_artifact(folder: Path):
    art = hf_artifact(folder, name="tiny-st")
    art.manifest["kind"] = "embedder"
    return art


@pytest.fixture(scope="module")
def embedder(tiny_st_dir):
    settings.set_threads(1)
    rt = open_runtime("embedder", st_artifact(tiny_st_dir), batch_size=2)
    yield rt
    rt.close()


def manual_mean_pool(folder: Path, texts: list[str]) -> np.ndarray:
    """Mean of the last hidden states over real tokens, then L2 normalisation — straight from transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
    rows = []
    for text in texts:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=MAX_SEQ)
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        mean = hidden.mean(dim=0)
        rows.append((mean / mean.norm()).numpy())
    return np.stack(rows)


def test_embeddings_are_normalised_float32_and_equal_mean_pooling(embedder, tiny_st_dir):
    vecs = embedder.embed(TEXTS)
    assert vecs.shape == (len(TEXTS), DIM) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs, manual_mean_pool(tiny_st_dir, TEXTS), atol=1e-5)
    assert not np.allclose(vecs[0], vecs[2])  # different texts, different vectors


def test_batching_and_order_do_not_change_vectors(embedder):
    together = embedder.embed(TEXTS)
    alone = np.concatenate([embedder.embed([t]) for t in TEXTS])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(embedder.embed(TEXTS[::-1])[::-1], together, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)
    with pytest.raises(KogataError, match="list of texts"):
        embedder.embed("one string")


def test_long_text_is_truncated_to_max_seq_length(embedder):
    long = " ".join(CORPUS * 5)
    ids = embedder.tokenize(long)
    assert len(ids) == MAX_SEQ and ids[-1] == embedder.model.tokenizer.sep_token_id
    vec = embedder.embed([long])
    assert vec.shape == (1, DIM) and np.isfinite(vec).all()


def test_info_and_protocol(embedder):
    from kogata.runtimes.base import EmbeddingRuntime

    info = embedder.info()
    assert info["runtime"] == "embedder" and info["dim"] == DIM and info["max_seq_length"] == MAX_SEQ
    assert info["threads"] == 1 and info["batch_size"] == 2
    assert info["sentence_transformers"] and info["torch"] and info["transformers"]
    assert isinstance(embedder, EmbeddingRuntime) and embedder.kind == "embedder"
    assert get_runtime_class("embedder").kind == "embedder"
    assert embedder.lock.acquire(blocking=False)
    embedder.lock.release()


def test_max_seq_length_option(tiny_st_dir):
    rt = open_runtime("embedder", st_artifact(tiny_st_dir), max_seq_length="8")
    try:
        assert rt.info()["max_seq_length"] == 8 and len(rt.tokenize(" ".join(CORPUS))) == 8
    finally:
        rt.close()


def test_kinds_are_checked_both_ways(tiny_st_dir, tiny_llama_dir):
    with pytest.raises(KogataError, match="sentence embedder") as err:
        open_runtime("torch", st_artifact(tiny_st_dir))
    assert "'embedder' runtime" in err.value.hint
    with pytest.raises(KogataError, match="runs sentence embedders"):
        open_runtime("embedder", hf_artifact(tiny_llama_dir))


def test_folder_without_modules_json_is_refused(tiny_st_dir, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in tiny_st_dir.iterdir():
        if f.is_file() and f.name != "modules.json":
            (plain / f.name).write_bytes(f.read_bytes())
    with pytest.raises(KogataError, match="no modules.json"):
        open_runtime("embedder", st_artifact(plain))


def test_import_keeps_the_pooling_folder_and_runs(tiny_st_dir, kogata_home, embedder):
    from kogata.artifacts.importer import import_local
    from kogata.artifacts.store import Store

    art = import_local(Store(), tiny_st_dir, name="tiny-st", log=lambda m: None)
    assert art.kind == "embedder" and art.format == "hf"
    assert "1_Pooling/config.json" in art.manifest["files"] and "modules.json" in art.manifest["files"]
    assert art.verify() == []
    rt = open_runtime("embedder", art)
    try:
        assert np.allclose(rt.embed(TEXTS), embedder.embed(TEXTS), atol=1e-6)
    finally:
        rt.close()
