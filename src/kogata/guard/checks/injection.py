"""``injection``: prompt-injection phrases in Japanese and English, matched on the loosely folded text.

Folding (NFKC, lower case, katakana → hiragana) lets ``ＩＧＮＯＲＥ　ＰＲＥＶＩＯＵＳ　ＩＮＳＴＲＵＣＴＩＯＮＳ`` and
``以前のシジを無視`` style variants match the same patterns. The phrases are written for this project; add your own
with ``extra_patterns`` (regular expressions on the folded text; case and katakana/hiragana are ignored).
"""

from __future__ import annotations

import re

from pydantic import field_validator

from kogata.data.fold import fold, kana_to_hiragana
from kogata.guard.checks.registry import Check, CheckOptions, register_check
from kogata.guard.verdict import GuardContext, Hit

_GAP = r"[^。.!?！？\n]{0,12}?"
_PREV = r"(?:以前|前|これまで|今まで|いままで|上記|上|先ほど|さきほど|最初|元|既存|事前|開発者)"
_RULES = r"(?:指示|しじ|命令|めいれい|ルール|設定|プロンプト|制約|制限|指令|ガイドライン|方針|システムメッセージ|注意事項)"
_PHRASES = {
    "IGNORE_INSTRUCTIONS": [
        r"\b(?:ignore|disregard|forget|override|bypass|skip|drop)\b[^.!?\n]{0,30}?\b(?:previous|prior|above|earlier|preceding|former|"
        r"initial|original|system|all|any|your|the)\b[^.!?\n]{0,20}?\b(?:instructions?|prompts?|rules|directions|guidelines|"
        r"directives|context|messages|constraints|programming)\b",
        r"\b(?:ignore|disregard|forget)\b (?:all |everything )?(?:of )?(?:the|everything) above\b",
        rf"{_PREV}{_GAP}{_RULES}{_GAP}(?:無視|忘れ|破棄|取り消|取消|なかったこと|リセット|従わな|守らな)",
        rf"{_RULES}(?:は|を|に)?{_GAP}(?:すべて|全て|全部|一旦|いったん)?{_GAP}(?:無視して|無視し、|無視しろ|無視せよ|無視してください|忘れて)",
    ],
    "REVEAL_PROMPT": [
        r"\b(?:reveal|show|print|display|repeat|output|tell|give|leak|dump|list)\b[^.!?\n]{0,20}?\b(?:system prompt|hidden (?:prompt|instructions)|"
        r"(?:initial|original|secret|internal) (?:prompt|instructions)|your instructions|developer message)",
        r"\b(?:repeat|print|output|paste|copy|reproduce)\b[^.!?\n]{0,30}?\b(?:text|words|everything|messages?|prompt)\s+(?:above|before this)\b",
        r"\bwhat (?:were|have) you (?:been )?(?:told|instructed|given)\b[^.!?\n]{0,30}?\b(?:before|start|begin)",
        r"\b(?:reveal|show|print|output|dump)\b[^.!?\n]{0,20}?\b(?:full|entire|hidden|internal) (?:configuration|config|settings)\b",
        r"(?:最初|はじめ|事前)に(?:与えられた|受け取った|設定された|渡された)(?:指示|プロンプト|命令)",
        r"(?:システムプロンプト|(?:隠された|内部の|最初の|秘密の|元の)(?:指示|プロンプト))(?:を|の内容を|の中身を)?"
        + _GAP + r"(?:表示|教え|出力|見せ|開示|書き出|貼)",
    ],
    "ROLE_OVERRIDE": [
        r"\byou are now\b[^.!?\n]{0,30}?\b(?:dan|unrestricted|unfiltered|jailbroken|free from|no longer bound|developer mode|evil)",
        r"\b(?:pretend|act as if|imagine)\b[^.!?\n]{0,20}?\byou (?:have no|are not bound by|don't have|do not have|are free of)\b[^.!?\n]{0,15}?"
        r"\b(?:rules|restrictions|guidelines|filters|limits|policies)",
        r"\b(?:developer mode|jailbreak|jailbroken|do anything now|dan mode)\b",
        # not a bare フィルター: "フィルターを外しました" is how customers describe cleaning an air conditioner
        r"(?:制限|制約|(?:安全|コンテンツ|出力|有害)フィルター?|安全装置|セーフティ|検閲)(?:を|は)?" + _GAP + r"(?:解除|外し|外して|無効|オフ)",
        r"\byou are (?:now |no longer )?(?:dan\b|an? (?:ai|model|assistant|chatbot) (?:with no|without) (?:restrictions|rules|limits|filters))",
        r"\byou are no longer (?:a|an|the|my)\b[^.!?\n]{0,30}?\b(?:assistant|bot|agent|ai)\b",
        r"\b(?:an? )?(?:unrestricted|unfiltered|uncensored) (?:ai|model|assistant|chatbot|mode)\b",
        r"\bpretend (?:you(?:'re| are)|to be)\b[^.!?\n]{0,60}?\b(?:prompt|instructions|rules|restrictions|unrestricted|no limits)\b",
        r"\b(?:respond|answer|reply|talk)\b[^.!?\n]{0,20}?\bwithout (?:any |your )?(?:content |safety )?(?:polic(?:y|ies)|filters?|restrictions|rules|guidelines)\b",
        r"\b(?:disable|turn off|switch off|remove|bypass)\b[^.!?\n]{0,20}?\b(?:safety|content|security) (?:rules|filters?|polic(?:y|ies)|guidelines|checks)\b",
        r"\b(?:switch|go|enter|enable)\b[^.!?\n]{0,10}?\b(?:to |into )?(?:debug|maintenance|god|admin|developer) mode\b",
        r"(?:ルール|規則|制限|制約)(?:は|が)?(?:一切)?(?:適用されません|適用されない|ありません)",
        r"なんでも答える(?:ai|ＡＩ|アシスタント|ボット)",
        r"(?:開発者モード|脱獄|ジェイルブレイク|なんでもありモード)",
        r"(?:ルール|規則|制約|制限|倫理)に(?:縛られない|従わない|とらわれない)",
    ],
    "FAKE_ROLE_MARKER": [r"<\|im_start\|>\s*system|\[/?inst\]|^\s*#{2,}\s*(?:system|instruction)s?\s*:?", r"(?m)^\s*system\s*[:：]",
                         r"</?\s*(?:system|user|assistant|developer)\s*>"],
}


# Every built-in phrase contains one of these (folded) words; text without any of them cannot match.
_TRIGGERS = tuple(kana_to_hiragana(w) for w in (
    "instruction", "prompt", "rule", "direction", "guideline", "directive", "context", "message", "constraint", "programming",
    "you are now", "pretend", "act as if", "imagine", "developer mode", "jailbr", "do anything now", "dan mode", "<|im_start|>",
    "[inst]", "[/inst]", "system", "無視", "忘れ", "破棄", "取り消", "取消", "なかったこと", "リセット", "従わな", "守らな", "プロンプト",
    "しじ", "めいれい", "解除", "外し", "無効", "オフ", "開発者モード", "脱獄", "ジェイルブレイク", "なんでもありモード", "縛られない", "とらわれない",
    "above", "before this", "told", "instructed", "config", "settings", "you are", "unrestricted", "unfiltered", "uncensored",
    "without", "disable", "turn off", "switch off", "remove", "bypass", " mode", "</", "<system", "<user", "<assistant", "<developer",
    "適用されな", "適用されません", "ありません", "なんでも答える", "与えられた", "受け取った", "設定された", "渡された",
))
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


class InjectionOptions(CheckOptions):
    extra_patterns: list[str] = []

    @field_validator("extra_patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"bad regex {p!r}: {exc}") from None
        return v


@register_check("injection")
class InjectionCheck(Check):
    Options = InjectionOptions

    def __init__(self, options: InjectionOptions | None = None):
        super().__init__(options)
        self._patterns = [(kind, re.compile(kana_to_hiragana(p), re.MULTILINE)) for kind, ps in _PHRASES.items() for p in ps]
        self._patterns += [("CUSTOM", re.compile(kana_to_hiragana(p), re.IGNORECASE)) for p in self.options.extra_patterns]
        self._custom_from = len(self._patterns) - len(self.options.extra_patterns)

    def scan(self, text: str, ctx: GuardContext | None = None) -> list[Hit]:
        f = fold(text, True)
        t = f.text
        if not any(k in t for k in _TRIGGERS):  # fast path: ordinary text has none of the phrases' key words
            patterns = self._patterns[self._custom_from:]
        else:
            patterns = self._patterns
        hits = [Hit(*f.span(*m.span()), kind) for kind, p in patterns for m in p.finditer(t) if m.end() > m.start()]
        hits += self._encoded(text)
        return sorted(hits, key=lambda h: (h.start, h.end))

    def _encoded(self, text: str) -> list[Hit]:
        """Base64 runs that decode to text holding an injection phrase ("follow this: aWdub3Jl…")."""
        import base64
        import binascii

        out = []
        for m in _BASE64.finditer(text):
            run = m.group(0)
            try:
                decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if not decoded.isprintable() or len(decoded) < 8:
                continue
            t = fold(decoded, True).text
            if any(p.search(t) for _, p in self._patterns):
                out.append(Hit(m.start(), m.end(), "ENCODED_INJECTION"))
        return out
