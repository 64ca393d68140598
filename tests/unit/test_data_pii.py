"""PII scrubbing: every type in Japanese and English, with the negatives that must stay untouched."""

from __future__ import annotations

import pytest

from kogata.data.normalize import normalize_text
from kogata.data.pii import Scrubber, luhn_valid, my_number_check_digit, my_number_valid, url_has_secret


def scrub(text: str, urls: str = "secrets") -> tuple[str, dict]:
    s = Scrubber(urls)
    return s.scrub(normalize_text(text)), dict(s.counts)


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        # e-mail
        ("連絡先はtaro.yamada@example.co.jpまでお願いします。", "連絡先は[EMAIL]までお願いします。", "EMAIL"),
        ("Write to john+sales@mail.example.com.", "Write to [EMAIL].", "EMAIL"),
        ("メールは　ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ　へ", "メールは [EMAIL] へ", "EMAIL"),  # full-width, after NFKC
        # phone: Japanese formats and international
        ("お電話は03-1234-5678までどうぞ。", "お電話は[PHONE]までどうぞ。", "PHONE"),
        ("携帯090-1234-5678に連絡ください", "携帯[PHONE]に連絡ください", "PHONE"),
        ("フリーダイヤル0120-123-456（平日のみ）", "フリーダイヤル[PHONE](平日のみ)", "PHONE"),
        ("代表(03)1234-5678です", "代表[PHONE]です", "PHONE"),
        ("電話：０３－１２３４－５６７８", "電話:[PHONE]", "PHONE"),  # full-width digits
        ("TEL.0312345678", "TEL.[PHONE]", "PHONE"),
        ("Call +81 90-1234-5678 today.", "Call [PHONE] today.", "PHONE"),
        ("Our US office: +1 415 555 0100.", "Our US office: [PHONE].", "PHONE"),
        ("Phone (415) 555-0100 after 9am.", "Phone [PHONE] after 9am.", "PHONE"),
        # postal codes: only after a label
        ("〒150-0001 東京都渋谷区", "〒[POSTAL_CODE] 東京都渋谷区", "POSTAL_CODE"),
        ("郵便番号：１５０－０００１", "郵便番号:[POSTAL_CODE]", "POSTAL_CODE"),
        ("Postal code 150-0001, Tokyo", "Postal code [POSTAL_CODE], Tokyo", "POSTAL_CODE"),
        # credit cards: Luhn-valid only
        ("カード番号 4111 1111 1111 1111 で決済", "カード番号 [CREDIT_CARD] で決済", "CREDIT_CARD"),
        ("card 5500-0000-0000-0004 on file", "card [CREDIT_CARD] on file", "CREDIT_CARD"),
        ("Amex 378282246310005.", "Amex [CREDIT_CARD].", "CREDIT_CARD"),
        # My Number: valid check digit only
        ("マイナンバー：1234 5678 9018", "マイナンバー:[MY_NUMBER]", "MY_NUMBER"),
        ("My Number 123456789018 was sent", "My Number [MY_NUMBER] was sent", "MY_NUMBER"),
        ("個人番号１２３４５６７８９０１８", "個人番号[MY_NUMBER]", "MY_NUMBER"),  # full-width digits
        # URLs carrying secrets
        ("再設定: https://example.com/reset?token=abc123 から", "再設定: [URL] から", "URL"),
        ("See https://api.example.com/v1/files?key=XYZ&sig=9f8e.", "See [URL].", "URL"),
        ("Login at https://example.com/cb#access_token=eyJhbGci", "Login at [URL]", "URL"),
        ("https://admin:hunter2@db.example.com/", "[URL]", "URL"),
    ],
)
def test_pii_is_scrubbed(text, expected, kind):
    out, counts = scrub(text)
    assert out == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 failed the Luhn check",  # invalid Luhn
        "請求番号 4111-1111-1111-1112",
        "マイナンバー：1234 5678 9012",  # invalid check digit (valid would be 8)
        "My Number 123456789011",
        "123-4567 is a code with no postal label",
        "2024-01-15 の注文、型番SK-R450、価格168,000円",
        "Version 1.2.3 released 2024-03-31; order 12345678",
        "ISBN 978-4-12-345678-9",
        "期間は2023年4月1日〜2024年3月31日です",
        "@sakura_support on social media",
        "plain link https://example.com/products/09012345678?ref=top stays",
    ],
)
def test_not_pii_stays(text):
    out, counts = scrub(text)
    assert out == normalize_text(text)
    assert counts == {}


def test_all_urls_mode_and_counts():
    out, counts = scrub("docs: https://example.com/manual and mail a@b.jp", urls="all")
    assert out == "docs: [URL] and mail [EMAIL]"
    assert counts == {"URL": 1, "EMAIL": 1}
    out, counts = scrub("docs: https://example.com/manual?token=x", urls="keep")
    assert "[URL]" not in out and counts == {}


def test_check_digit_algorithms():
    # Worked by hand from the ordinance: digits of 12345678901 from the right times weights 2..7, 2..6
    # sum to 212; 212 mod 11 = 3; check digit = 11 - 3 = 8.
    assert my_number_check_digit("12345678901") == 8
    assert my_number_valid("123456789018") and not my_number_valid("123456789017")
    assert my_number_check_digit("00000000000") == 0  # remainder 0 → 0
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert url_has_secret("https://x.jp/?session=abc") and url_has_secret("https://x.jp/?X-Amz-Signature=1")
    assert not url_has_secret("https://x.jp/?page=2&q=冷蔵庫")
