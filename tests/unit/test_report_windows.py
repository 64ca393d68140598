"""The perplexity window (``window``, ``docs_over_window`` of a perplexity result) is printed beside the figure in
the eval and optimize reports, in English and Japanese."""

from __future__ import annotations

import re

from tests.unit.test_report import _visible_text, fake_results, optimize_results


def _set_window(res: dict, windows: list[tuple[int, int]]) -> dict:
    for e, (window, over) in zip(res["entries"], windows):
        if e.get("quality"):
            e["quality"]["ppl"].update(window=window, docs_over_window=over)
    return res


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", _visible_text(html))


def test_eval_report_shows_each_entrys_window():
    from kogata.report import render_html, render_markdown

    res = _set_window(fake_results(), [(2048, 1), (8192, 0)])
    text = _text(render_html(res))
    assert "window (tokens)" in text and "2,048 1 of 3 documents longer" in text and "8,192 0 of 3 documents longer" in text
    assert "only documents longer than the window depend on its length" in text
    md = render_markdown(res)
    assert "Perplexity of ppl: scored in windows of 2,048 tokens; 1 of 3 documents are longer" in md
    assert "(base-model · torch)" in md and "(small-model · llamacpp)" in md  # two windows: each names its entries


def test_eval_report_in_japanese_and_without_a_window():
    from kogata.report import render_html, render_markdown

    ja = _set_window(fake_results("ja"), [(2048, 0), (2048, 0)])
    text = _text(render_html(ja))
    assert "ウィンドウ長（トークン）" in text and "2,048 3 件中 0 件がウィンドウより長い" in text
    md = render_markdown(ja)
    assert "ppl のパープレキシティ：2,048 トークンのウィンドウで計算。3 件中 0 件の文書がウィンドウより長く" in md
    assert "(base-model" not in md  # one window for every entry: no names needed
    plain = render_html(fake_results())  # results without the fields (older runs, other task types): nothing added
    assert "window (tokens)" not in plain and "windows of" not in render_markdown(fake_results())


def test_optimize_report_shows_the_window():
    from kogata.report.optimize import render_html, render_markdown

    en = _set_window(optimize_results("en"), [(2048, 0), (2048, 0)])
    line = "Perplexity of ppl: scored in windows of 2,048 tokens; 0 of 3 documents are longer than the window"
    assert line in _text(render_html(en)) and line in render_markdown(en)
    ja = _set_window(optimize_results("ja"), [(2048, 2), (1024, 3)])
    text, md = _text(render_html(ja)), render_markdown(ja)
    assert "2,048 トークンのウィンドウで計算。3 件中 2 件" in text and "1,024 トークンのウィンドウで計算。3 件中 3 件" in md
    assert "(ベースライン（浮動小数点モデル）)" in md and "(Q4_0)" in md  # two windows: each names its candidate, localized
