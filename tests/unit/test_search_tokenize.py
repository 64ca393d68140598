"""BM25 tokenizers for Japanese and English (the first piece of document search)."""

import pytest

from kogata.core.errors import KogataError
from kogata.search.tokenize import bigram_tokens, get_tokenizer, sudachi_tokens


def test_sudachi_keeps_content_words_and_drops_particles():
    toks = sudachi_tokens("返品の期限は購入後30日以内です。")
    assert "返品" in toks and "期限" in toks and "以内" in toks
    assert "の" not in toks and "は" not in toks and "。" not in toks


def test_product_codes_stay_whole_in_both_tokenizers():
    for tokenize in (sudachi_tokens, bigram_tokens):
        assert "sk-2041" in tokenize("SK-2041をご確認ください")


def test_bigrams_for_japanese_words_for_latin():
    toks = bigram_tokens("返品期限 Return Policy")
    assert {"返品", "品期", "期限", "return", "policy"} <= set(toks)


def test_unknown_tokenizer_is_a_one_line_error():
    with pytest.raises(KogataError, match="sudachi, bigram"):
        get_tokenizer("regex")
