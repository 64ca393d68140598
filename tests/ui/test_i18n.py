"""The UI's words: one key set in both catalogs, the same placeholders, every template rendered in both
languages, language chosen by ?lang= → cookie → Accept-Language, no English words on a Japanese page and no
literal text in the templates (everything goes through the catalogs)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from kogata.serve.ui import i18n

TEMPLATES = Path(i18n.__file__).parent / "templates"
PAGES = ["/ui/", "/ui/models", "/ui/playground", "/ui/review", "/ui/runs", "/ui/runs/new", "/ui/monitoring", "/ui/settings", "/ui/login"]
# words that are the same in both languages (product, model and technical names, units)
SAME_IN_BOTH = {"kogata", "API", "JSONL", "CSV", "MiB", "MB", "F1", "ROUGE-L", "Enter", "Shift", "Ctrl"}


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_both_catalogs_have_the_same_keys_and_placeholders():
    en, ja = i18n.catalog("en"), i18n.catalog("ja")
    assert set(en) == set(ja), f"only in en: {sorted(set(en) - set(ja))}; only in ja: {sorted(set(ja) - set(en))}"
    for key in en:
        assert _fields(en[key]) == _fields(ja[key]), f"{key}: placeholders differ: {en[key]!r} vs {ja[key]!r}"
        assert en[key].strip() and ja[key].strip(), f"{key} is empty"


def test_japanese_catalog_is_japanese():
    ja = i18n.catalog("ja")
    kana_or_kanji = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    english_only = []
    for key, value in ja.items():
        words = set(re.findall(r"[A-Za-z][A-Za-z-]+", re.sub(r"\{[a-z_]+\}", "", value)))
        if key != "switch_language" and not kana_or_kanji.search(value) and not words <= SAME_IN_BOTH:
            english_only.append(key)
    assert english_only == [], f"ja.yaml entries without Japanese: {english_only}"


def test_every_key_used_by_the_code_is_in_the_catalog():
    src = Path(i18n.__file__).parent
    used = set()
    for path in list(src.glob("*.py")) + list(TEMPLATES.rglob("*.j2")):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_]+)["']\s*[,)]""", path.read_text(encoding="utf-8")))
        used |= set(re.findall(r"""UIError\(\d+, "([a-z0-9_]+)\"""", path.read_text(encoding="utf-8")))
    # keys built from a value: every value the code can produce has its key
    from kogata.ops.audit.log import SEVERITY
    from kogata.ops.review.queue import SOURCES, STATES
    from kogata.serve.ui.runs import KPI_KEYS
    from kogata.serve.ui.users import ROLES

    families = {"role_": ROLES, "source_": SOURCES, "state_": STATES, "action_": SEVERITY, "kpi_side_": ("min", "max"),
                "job_": ("running", "done", "failed", "cancelled", "interrupted"), "cand_": ("pending", "running", "done", "failed", "skipped"),
                "health_": ("ready", "loading", "error"), "verdict_": ("pass", "fail", "error"), "role_msg_": ("user", "assistant", "system"),
                "review_done_": ("approved", "corrected", "rejected"),
                "drift_status_": ("ok", "alert", "insufficient", "unavailable"),
                "sig_": ("input_length", "language_mix", "tokenizer_fit", "confidence", "guard", "answer_refused", "latency", "embedding")}
    for prefix, values in families.items():
        used |= {prefix + v for v in values}
    used |= {f"kpi_{k}_{part}" for k in (*KPI_KEYS, "generic") for part in ("name", "explain")}
    from kogata.serve.ui.web import NAV

    used |= {key for _, key, _ in NAV}
    missing = sorted(used - set(i18n.catalog("en")))
    assert missing == [], f"keys used but not in the catalogs: {missing}"


@pytest.mark.parametrize("header, expected", [
    ("ja-JP,ja;q=0.9,en;q=0.8", "ja"), ("en-US,en;q=0.9,ja;q=0.5", "en"), ("fr-FR, en;q=0.3, ja;q=0.6", "ja"),
    ("de-DE", None), ("", None), ("en;q=0, ja;q=0.1", "ja"),
])
def test_accept_language(header, expected):
    assert i18n.from_accept_language(header) == expected


def test_language_order_is_query_then_cookie_then_browser():
    assert i18n.negotiate("en", "ja", "ja") == ("en", True)
    assert i18n.negotiate(None, "en", "ja-JP") == ("en", False)
    assert i18n.negotiate(None, None, "en-GB") == ("en", False)
    assert i18n.negotiate("xx", None, None) == ("ja", False)  # Japanese first


def _visible_text(html: str) -> str:
    html = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", html)
    html = re.sub(r"(?s)<!--.*?-->", " ", html)
    attrs = " ".join(re.findall(r'(?:aria-label|title|placeholder|alt)="([^"]*)"', html))
    text = re.sub(r"(?s)<[^>]+>", " ", html)
    import html as h

    return h.unescape(text + " " + attrs)


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_in_both_languages(client, path, lang):
    r = client.get(path, params={"lang": lang})
    assert r.status_code == 200, r.text[:300]
    assert f'<html lang="{lang}">' in r.text
    assert "[" + "nav_home]" not in r.text and not re.search(r"\[[a-z]+_[a-z_]+\]", _visible_text(r.text)), "a catalog key is missing"


@pytest.mark.parametrize("path", PAGES)
def test_no_english_ui_string_on_a_japanese_page(client, path):
    text = _visible_text(client.get(path, params={"lang": "ja"}).text)
    en, ja = i18n.catalog("en"), i18n.catalog("ja")
    leaked = []
    for key, value in en.items():
        plain = re.sub(r"\{[a-z_]+\}", "", value).strip(" .:")
        if key == "switch_language" or plain == ja[key] or len(plain) < 4 or plain in SAME_IN_BOTH:
            continue
        if " " not in plain and plain.islower():
            continue  # one lowercase word (a status) also occurs in English data shown as is (model titles, suite texts)
        if re.search(r"(?<![A-Za-z])" + re.escape(plain) + r"(?![A-Za-z])", text):
            leaked.append((key, plain))
    assert leaked == [], f"English UI strings on the Japanese page {path}: {leaked}"


def test_templates_hold_no_literal_text():
    """Every word a template shows comes from t(): outside Jinja tags only markup and punctuation remain."""
    offenders = []
    for path in TEMPLATES.rglob("*.j2"):
        src = path.read_text(encoding="utf-8")
        src = re.sub(r"(?s)\{#.*?#\}", "", src)
        src = re.sub(r"(?s)\{\{.*?\}\}|\{%.*?%\}", " ", src)
        src = re.sub(r"(?s)<[^>]*>", " ", src)
        src = re.sub(r'[a-z-]+="[^"]*"?', " ", src)  # attributes written by macros
        words = [w for w in re.findall(r"[A-Za-z\u3040-\u30ff\u4e00-\u9fff]{2,}", src)]
        if words:
            offenders.append((path.name, words[:5]))
    assert offenders == [], f"literal text in templates (put it in the catalogs): {offenders}"


def test_every_catalog_model_has_a_japanese_description_and_english_pages_keep_the_catalogs():
    from kogata.artifacts.catalog import CATALOG

    ja, en = i18n.Translator("ja"), i18n.Translator("en")
    kana_or_kanji = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    for name, entry in CATALOG.items():
        text = ja.table("catalog_descriptions", name, entry.title)
        assert text != entry.title and kana_or_kanji.search(text), f"{name} has no Japanese description in ja.yaml"
        assert en.table("catalog_descriptions", name, entry.title) == entry.title
        if re.search(r"[a-z]{3,}", entry.params):  # a parameter count with English words in it ("4-bit") is translated too
            assert kana_or_kanji.search(ja.table("catalog_params", name, entry.params)), f"{name}: params in English"
    assert set(i18n.tables("ja")["catalog_descriptions"]) <= set(CATALOG), "descriptions of models not in the catalog"
    assert set(i18n.tables("ja")["catalog_params"]) <= set(CATALOG)
    assert ja.table("catalog_descriptions", "not-in-the-table", "the English text") == "the English text"
    assert ja("catalog_descriptions") == "[catalog_descriptions]"  # a table is not a string


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_models_page_shows_catalog_descriptions_in_the_page_language(client, lang):
    from markupsafe import escape

    from kogata.artifacts.catalog import CATALOG

    html = client.get("/ui/models", params={"lang": lang}).text
    for name, entry in CATALOG.items():
        shown = i18n.Translator(lang).table("catalog_descriptions", name, entry.title)
        assert f"<p>{escape(shown)}</p>" in html, (name, lang)
        assert f"<dd>{escape(i18n.Translator(lang).table('catalog_params', name, entry.params))}</dd>" in html
        if lang == "ja":
            assert str(escape(entry.title)) not in html, f"the English description of {name} is on the Japanese page"
