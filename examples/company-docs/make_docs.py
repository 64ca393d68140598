# ruff: noqa: E501  (tables of handbook facts: one fact per line)
"""Generate the company-docs sample handbook and its queries (run from anywhere; writes next to this file).

A fictional SME, あおば電機株式会社 / Aoba Denki Co., Ltd., that sells small appliances and office equipment.
The handbook is written in Japanese (``ja/``) and English (``en/``) with a few bilingual notices (``shared/``):
product manuals with spec tables (24 products, 6 series, product codes such as ``AP-210``), error-code tables per
series, company policies (some with an older, superseded version kept beside the current one: near-duplicates),
procedures, FAQs (JSONL, one document per line) and HTML notices. Every fact a query asks about is stated in
exactly one current document, so each query has one gold document.

Queries (``queries-ja.jsonl``, ``queries-en.jsonl``): ``{"id", "query", "gold": [doc id], "answer", "group"}``
with groups ``same`` (the document's own wording), ``paraphrase`` (few shared words), ``code`` (product-code
lookup), ``version`` (a policy that has a superseded near-duplicate), ``cross`` (an English query for a Japanese
document, or the reverse) and ``none`` (not in the documents: ``gold`` is empty).

The output is deterministic (fixed seed); rerun after editing the tables below: ``python make_docs.py``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
RNG = random.Random(17)

# ---- products ----------------------------------------------------------------------------------------
SERIES = [
    # prefix, ja name, en name, capacity label ja/en + unit, maintenance part ja/en, interval months base
    ("AP", "空気清浄機", "air purifier", ("適用床面積", "room size", "m²"), ("集じんフィルターの交換", "dust filter replacement"), 12),
    ("DH", "除湿機", "dehumidifier", ("タンク容量", "tank capacity", "L"), ("エアフィルターの掃除", "air filter cleaning"), 6),
    ("KT", "電気ケトル", "electric kettle", ("満水容量", "capacity", "L"), ("湯あか（スケール）の除去", "descaling"), 3),
    ("LP", "ラベルプリンター", "label printer", ("最大テープ幅", "maximum tape width", "mm"), ("印字ヘッドの清掃", "print head cleaning"), 2),
    ("SH", "業務用シュレッダー", "office shredder", ("最大細断枚数", "sheets per pass", "枚"), ("刃の注油", "blade oiling"), 1),
    ("DL", "LEDデスクライト", "LED desk lamp", ("明るさ", "brightness", "lm"), ("本体のから拭き", "wiping the body"), 6),
]
CAPACITY = {"AP": [20, 33, 46, 60], "DH": [2.5, 3.5, 4.5, 6.0], "KT": [0.8, 1.0, 1.2, 1.7], "LP": [12, 18, 24, 36],
            "SH": [6, 10, 14, 20], "DL": [450, 600, 800, 1000]}
COLORS = [("ホワイト", "white"), ("グレー", "grey"), ("ブラック", "black"), ("ネイビー", "navy")]
ERRORS = {
    "AP": [("E1", "ファンモーターの異常", "fan motor fault", "電源プラグを抜き、10分後に差し直す", "unplug it and plug it back in after 10 minutes"),
           ("E2", "フィルターが装着されていない", "filter not fitted", "フィルターを正しく取り付ける", "fit the filter correctly"),
           ("E5", "ほこりセンサーの汚れ", "dirty dust sensor", "センサー窓を綿棒で掃除する", "clean the sensor window with a cotton swab")],
    "DH": [("E3", "タンクが満水", "tank full", "タンクの水を捨てる", "empty the tank"),
           ("E4", "室温が低すぎる（1℃未満）", "room too cold (below 1 °C)", "室温が上がってから運転する", "run it again once the room is warmer"),
           ("E7", "冷媒回路の異常", "refrigerant circuit fault", "使用を止めて修理を依頼する", "stop using it and request a repair")],
    "KT": [("E1", "空だき", "boiled dry", "水を入れて電源を入れ直す", "add water and switch it on again"),
           ("E6", "温度センサーの異常", "temperature sensor fault", "修理を依頼する", "request a repair")],
    "LP": [("E2", "テープ切れ", "out of tape", "新しいテープカセットを入れる", "insert a new tape cassette"),
           ("E8", "カッターの詰まり", "cutter jam", "カバーを開けて詰まったテープを取り除く", "open the cover and remove the jammed tape"),
           ("E9", "印字ヘッドの過熱", "print head overheated", "15分休ませてから印刷する", "let it rest for 15 minutes before printing")],
    "SH": [("E3", "紙詰まり", "paper jam", "逆転ボタンを3秒押して紙を戻す", "hold the reverse button for 3 seconds"),
           ("E4", "ごみ箱が満杯", "bin full", "ごみ箱の紙くずを捨てる", "empty the waste bin"),
           ("E6", "モーターの過熱", "motor overheated", "30分停止して冷ます", "let it cool for 30 minutes")],
    "DL": [("E1", "調光回路の異常", "dimmer fault", "電源を入れ直す", "switch it off and on again"),
           ("E3", "USB給電の過電流", "USB overcurrent", "USB機器を外す", "unplug the USB device")],
}


def products() -> list[dict]:
    out = []
    for prefix, ja, en, (cap_ja, cap_en, unit), (part_ja, part_en), interval in SERIES:
        for i, cap in enumerate(CAPACITY[prefix]):
            code = f"{prefix}-{(i + 1) * 100 + RNG.choice([10, 20, 30, 50])}"
            price = RNG.choice([9800, 12800, 14800, 19800, 24800, 29800, 34800, 39800, 49800]) + i * 5000
            out.append({
                "code": code, "series": prefix, "ja": ja, "en": en, "cap_ja": cap_ja, "cap_en": cap_en, "unit": unit, "cap": cap,
                "part_ja": part_ja, "part_en": part_en, "interval": interval + RNG.choice([0, 0, interval]),
                "power": RNG.choice([12, 18, 25, 30, 45, 60, 90, 120, 250, 800, 1200]) if prefix != "KT" else RNG.choice([900, 1200, 1250]),
                "weight": round(RNG.uniform(0.6, 9.5), 1), "warranty": RNG.choice([1, 1, 2, 3]), "price": price,
                "color": COLORS[i % len(COLORS)],
            })
    return out


def yen(n: int) -> str:
    return f"{n:,}円"


def manual_ja(p: dict) -> str:
    return f"""# {p['code']} {p['ja']} 取扱説明書（要約）

{p['code']}は、あおば電機の{p['ja']}シリーズの製品です。{p['cap_ja']}は{p['cap']}{p['unit']}です。
ご使用の前に、この説明書をよくお読みください。

## 仕様

| 項目 | 値 |
|---|---|
| 品番 | {p['code']} |
| {p['cap_ja']} | {p['cap']} {p['unit']} |
| 定格消費電力 | {p['power']} W |
| 質量 | {p['weight']} kg |
| 本体色 | {p['color'][0]} |
| 希望小売価格 | {yen(p['price'])}（税込） |
| 保証期間 | ご購入日から{p['warranty']}年 |

## お手入れ

{p['part_ja']}は{p['interval']}か月ごとに行ってください。お手入れの前には必ず電源プラグを抜いてください。
本体が汚れたときは、やわらかい布で拭いてください。シンナーやベンジンは使わないでください。

## 保証と修理

保証期間内の故障は、保証書とレシートをご用意のうえ、サポート窓口（平日9時〜17時）にご連絡ください。
エラー表示が出たときは「{p['ja']}シリーズ エラーコード一覧」をご覧ください。
"""


def manual_en(p: dict) -> str:
    return f"""# {p['code']} {p['en'].title()} — Quick Manual

The {p['code']} is part of the Aoba Denki {p['en']} series. Its {p['cap_en']} is {p['cap']} {p['unit'] if p['unit'] != '枚' else 'sheets'}.
Please read this manual before use.

## Specifications

| Item | Value |
|---|---|
| Model | {p['code']} |
| {p['cap_en'].capitalize()} | {p['cap']} {p['unit'] if p['unit'] != '枚' else 'sheets'} |
| Rated power consumption | {p['power']} W |
| Weight | {p['weight']} kg |
| Colour | {p['color'][1]} |
| Suggested retail price | ¥{p['price']:,} (tax included) |
| Warranty | {p['warranty']} year{'s' if p['warranty'] > 1 else ''} from the date of purchase |

## Care

Do the {p['part_en']} every {p['interval']} months. Always unplug the unit before cleaning it.
Wipe the body with a soft cloth; do not use thinner or benzine.

## Warranty and repairs

For faults within the warranty period, contact the support desk (weekdays 9:00–17:00) with the warranty card and receipt.
If an error code appears, see the "{p['en'].title()} Series Error Codes" page.
"""


def product_queries(p: dict, doc_ja: str, doc_en: str) -> tuple[list[dict], list[dict]]:
    c = p["code"]
    unit_en = p["unit"] if p["unit"] != "枚" else "sheets"
    ja = [
        ("same", f"{c}の定格消費電力は何Wですか。", f"{p['power']} W"),
        ("same", f"{c}の保証期間はどれくらいですか。", f"{p['warranty']}年"),
        ("paraphrase", f"{p['ja']}{c}の{p['part_ja']}は、どのくらいの間隔でやればいいの？", f"{p['interval']}か月ごと"),
        ("paraphrase", f"{c}って持ち上げると何キロくらい？", f"{p['weight']} kg"),
        ("code", f"{c} 希望小売価格", yen(p["price"])),
        ("code", f"{c} {p['cap_ja']}", f"{p['cap']} {p['unit']}"),
    ]
    en = [
        ("same", f"What is the rated power consumption of the {c}?", f"{p['power']} W"),
        ("same", f"How long is the warranty on the {c}?", f"{p['warranty']} year"),
        ("paraphrase", f"How often should I take care of the {p['part_en']} on my {c} {p['en']}?", f"every {p['interval']} months"),
        ("paraphrase", f"How heavy is the {c} to carry?", f"{p['weight']} kg"),
        ("code", f"{c} retail price", f"¥{p['price']:,}"),
        ("code", f"{c} {p['cap_en']}", f"{p['cap']} {unit_en}"),
    ]
    pick = RNG.sample(range(len(ja)), 2)
    return ([{"group": g, "query": q, "answer": a, "gold": [doc_ja]} for g, q, a in (ja[i] for i in pick)],
            [{"group": g, "query": q, "answer": a, "gold": [doc_en]} for g, q, a in (en[i] for i in pick)])


def errors_ja(prefix: str, name: str) -> str:
    rows = "\n".join(f"| {code} | {ja} | {fix_ja} |" for code, ja, _en, fix_ja, _fix_en in ERRORS[prefix])
    return f"""# {name}シリーズ エラーコード一覧

{name}（品番 {prefix}-で始まる全機種）の表示部にエラーコードが出たときは、次の表に従って対処してください。
対処しても直らないときは、サポート窓口に品番とエラーコードをお知らせください。

| コード | 内容 | 対処 |
|---|---|---|
{rows}
"""


def errors_en(prefix: str, name: str) -> str:
    rows = "\n".join(f"| {code} | {en} | {fix_en} |" for code, _ja, en, _fix_ja, fix_en in ERRORS[prefix])
    return f"""# {name.title()} Series Error Codes

When the display of an Aoba {name} (every model whose code starts with {prefix}-) shows an error code, follow this table.
If the error stays, tell the support desk the model code and the error code.

| Code | Meaning | What to do |
|---|---|---|
{rows}
"""


# ---- policies: (slug, ja title, en title, facts, old version of fact 0 or None) -----------------------
# a fact: (ja sentence, en sentence, ja same-wording q, ja paraphrase q, en same q, en paraphrase q, ja answer, en answer)
POLICIES = [
    ("returns", "返品・交換ポリシー", "Returns and Exchanges Policy", [
        ("未使用品の返品は、商品到着後30日以内に受け付けます。", "Unused items can be returned within 30 days of delivery.",
         "未使用品の返品はいつまで受け付けますか。", "買った品物を使わずに送り返したい。何日以内なら間に合う？",
         "How long after delivery can unused items be returned?", "I never opened the box — until when can I send it back?", "30日以内", "30 days"),
        ("初期不良の場合の返送料は当社が負担します。", "For items that are faulty on arrival, we pay the return shipping.",
         "初期不良の場合、返送料は誰が負担しますか。", "届いた時点で壊れていた商品を送り返す送料は自腹ですか？",
         "Who pays the return shipping for items faulty on arrival?", "The product was broken out of the box; do I have to pay postage to send it back?", "当社", "Aoba Denki"),
    ], ("未使用品の返品は、商品到着後14日以内に受け付けます。", "Unused items can be returned within 14 days of delivery.")),
    ("warranty", "製品保証規定", "Product Warranty Terms", [
        ("保証期間の延長は、ご購入から60日以内に会員サイトで申し込めます。", "A warranty extension can be ordered on the member site within 60 days of purchase.",
         "保証期間の延長はいつまでに申し込めますか。", "保証をもっと長くしたいんだけど、買ってから何日までなら手続きできる？",
         "Until when can a warranty extension be ordered?", "Is there a deadline for buying extra years of cover after I purchased the product?", "60日以内", "60 days"),
        ("落下や水濡れによる故障は保証の対象外です。", "Damage from drops or water is not covered by the warranty.",
         "落下や水濡れによる故障は保証の対象ですか。", "床に落として壊れた場合も無料で直してもらえる？",
         "Is damage from drops or water covered by the warranty?", "I dropped the device and it broke. Will you fix it for free?", "対象外", "not covered"),
    ], None),
    ("shipping", "配送ポリシー", "Shipping Policy", [
        ("ご注文金額が税込5,000円以上の場合、送料は無料です。", "Shipping is free for orders of ¥5,000 or more including tax.",
         "送料が無料になるのはご注文金額がいくら以上の場合ですか。", "いくら買えば配達料がかからなくなる？",
         "From what order amount is shipping free?", "How much do I need to spend so that delivery costs nothing?", "5,000円", "¥5,000"),
        ("平日14時までのご注文は当日に出荷します。", "Orders placed by 14:00 on weekdays ship the same day.",
         "当日出荷の締め切りは何時ですか。", "今日中に発送してもらうには何時までに頼めばいい？",
         "What is the cut-off time for same-day shipping?", "By what time do I have to order so the parcel leaves today?", "14時", "14:00"),
    ], ("ご注文金額が税込3,000円以上の場合、送料は無料です。", "Shipping is free for orders of ¥3,000 or more including tax.")),
    ("travel", "国内出張旅費規程", "Domestic Business Travel Rules", [
        ("国内出張の日当は1日あたり2,000円です。", "The daily allowance for domestic business trips is ¥2,000.",
         "国内出張の日当はいくらですか。", "国内の出張に行くと1日につき手当はいくら出る？",
         "How much is the daily allowance for domestic business trips?", "What do I get paid per day when I travel inside Japan for work?", "2,000円", "¥2,000"),
        ("宿泊費の上限は1泊10,000円です。", "Hotel costs are reimbursed up to ¥10,000 per night.",
         "宿泊費の上限は1泊いくらですか。", "出張先のホテル代はいくらまで会社が出してくれる？",
         "What is the hotel cost limit per night?", "How expensive a hotel room can I book on a business trip?", "10,000円", "¥10,000"),
    ], ("国内出張の日当は1日あたり1,500円です。", "The daily allowance for domestic business trips is ¥1,500.")),
    ("remote", "在宅勤務規程", "Remote Work Rules", [
        ("在宅勤務は週3日まで認めます。", "Remote work is allowed up to three days a week.",
         "在宅勤務は週何日まで認められていますか。", "家で仕事をしていいのは1週間に何回まで？",
         "How many days a week is remote work allowed?", "How often per week may I work from home?", "週3日", "three days"),
        ("在宅勤務手当として月3,000円を支給します。", "A remote work allowance of ¥3,000 per month is paid.",
         "在宅勤務手当は月いくらですか。", "自宅で働く人に光熱費の補助みたいなお金は出る？",
         "How much is the remote work allowance?", "Do people working from home get money toward utilities?", "月3,000円", "¥3,000"),
    ], None),
    ("leave", "年次有給休暇規程", "Paid Annual Leave Rules", [
        ("年次有給休暇は、入社6か月後に10日付与します。", "Ten days of paid annual leave are granted six months after joining.",
         "入社後、年次有給休暇はいつ何日付与されますか。", "新しく入った社員はいつから有休が使えて、何日もらえる？",
         "When and how many days of paid annual leave are granted after joining?", "As a new hire, when do I first get paid holidays and how many?", "6か月後に10日", "ten days after six months"),
        ("未使用の有給休暇は翌年度に限り繰り越せます。", "Unused paid leave can be carried over to the next year only.",
         "未使用の有給休暇は繰り越せますか。", "使い切れなかった休みは来年に持ち越せる？",
         "Can unused paid leave be carried over?", "What happens to holidays I did not take this year?", "翌年度に限り繰り越せる", "to the next year only"),
    ], ("年次有給休暇は、入社6か月後に8日付与します。", "Eight days of paid annual leave are granted six months after joining.")),
    ("overtime", "時間外労働規程", "Overtime Rules", [
        ("時間外労働は、事前に上長の承認を得てください。", "Overtime needs your manager's approval in advance.",
         "時間外労働には誰の承認が必要ですか。", "残業するとき、前もって誰かにOKをもらう必要はある？",
         "Whose approval is needed for overtime?", "Do I have to ask anyone before staying late?", "上長", "your manager"),
        ("月の時間外労働は45時間を上限とします。", "Overtime is limited to 45 hours a month.",
         "月の時間外労働の上限は何時間ですか。", "1か月にどれだけ残業してよいか決まりはある？",
         "What is the monthly overtime limit?", "Is there a cap on how many extra hours I can work in a month?", "45時間", "45 hours"),
    ], None),
    ("security", "情報セキュリティ規程", "Information Security Policy", [
        ("パスワードは12文字以上とし、英字・数字・記号を含めてください。", "Passwords must be at least 12 characters and contain letters, digits and symbols.",
         "パスワードは何文字以上にする必要がありますか。", "ログインの暗証はどのくらいの長さにしないといけない？",
         "How long must a password be?", "What is the minimum length for my login secret?", "12文字以上", "12 characters"),
        ("ノートPCを紛失したときは、1時間以内に情報システム部へ報告してください。", "Report a lost laptop to the IT department within one hour.",
         "ノートPCを紛失したら、いつまでにどこへ報告しますか。", "会社のパソコンをなくしちゃった。急いで誰に知らせればいい？",
         "When and to whom must a lost laptop be reported?", "I left my work notebook computer on the train — who do I tell and how fast?", "1時間以内に情報システム部", "IT department within one hour"),
    ], ("パスワードは8文字以上とし、英字と数字を含めてください。", "Passwords must be at least 8 characters and contain letters and digits.")),
    ("expenses", "経費精算規程", "Expense Reimbursement Rules", [
        ("経費精算は、支出した月の翌月10日までに申請してください。", "File expense claims by the 10th of the month after the spending.",
         "経費精算の申請期限はいつですか。", "立て替えたお金の払い戻しは、いつまでに出せばいい？",
         "What is the deadline for expense claims?", "By when do I have to submit receipts to get my money back?", "翌月10日", "the 10th of the following month"),
        ("1万円以上の支出には領収書の原本が必要です。", "Spending of ¥10,000 or more needs the original receipt.",
         "領収書の原本が必要なのはいくら以上の支出ですか。", "レシートのコピーでは足りないのは何円からの買い物？",
         "From what amount is the original receipt required?", "When is a photo of the receipt not enough?", "1万円以上", "¥10,000"),
    ], None),
    ("cards", "名刺発注ルール", "Business Card Ordering", [
        ("名刺は1回につき100枚単位で発注します。", "Business cards are ordered in lots of 100.",
         "名刺は何枚単位で発注しますか。", "名刺を頼むとき、一度に何枚ずつ作られる？",
         "In what quantity are business cards ordered?", "How many cards come in one print order?", "100枚", "100"),
        ("名刺の納期は発注から5営業日です。", "Business cards arrive five business days after ordering.",
         "名刺の納期はどれくらいですか。", "名刺を注文してから手元に届くまで何日かかる？",
         "How long does it take to receive business cards?", "If I order cards today, when will they be on my desk?", "5営業日", "five business days"),
    ], None),
    ("harassment", "ハラスメント相談窓口", "Harassment Consultation Desk", [
        ("相談窓口は人事部の外部委託先が運営し、匿名でも相談できます。", "The consultation desk is run by an outside firm for HR, and you may consult anonymously.",
         "ハラスメント相談は匿名でもできますか。", "名前を出さずに職場のいやがらせについて話を聞いてもらえる？",
         "Can I consult about harassment anonymously?", "Is it possible to report bullying at work without giving my name?", "匿名でもできる", "yes, anonymously"),
        ("相談窓口の受付時間は平日10時から19時です。", "The consultation desk is open on weekdays from 10:00 to 19:00.",
         "ハラスメント相談窓口の受付時間は？", "いやがらせの相談窓口には何時から何時まで電話できる？",
         "What are the hours of the harassment consultation desk?", "When can I call the desk that handles bullying complaints?", "平日10時から19時", "10:00 to 19:00"),
    ], None),
    ("parking", "社用駐車場の利用ルール", "Company Parking Rules", [
        ("社用駐車場の利用には、総務部で駐車許可証の発行を受けてください。", "To use the company car park, get a parking permit from General Affairs.",
         "社用駐車場を使うには何が必要ですか。", "車で通勤したいとき、会社の駐車場に停めるには何をもらえばいい？",
         "What do I need to use the company car park?", "I want to drive to work; what must I get before parking at the office?", "駐車許可証", "a parking permit"),
        ("来客用の区画は3番から5番です。", "Visitor spaces are numbers 3 to 5.",
         "来客用の駐車区画は何番ですか。", "お客さんの車はどこに停めてもらえばいい？",
         "Which parking spaces are for visitors?", "Where should a guest leave their car?", "3番から5番", "3 to 5"),
    ], None),
    ("gifts", "贈答品の受け取りに関する指針", "Gifts and Hospitality Guideline", [
        ("取引先からの贈答品は、5,000円相当までなら受け取れます。", "Gifts from business partners may be accepted up to a value of ¥5,000.",
         "取引先からの贈答品はいくら相当まで受け取れますか。", "お客さんからお歳暮をもらった。どのくらいの値段までならもらっていい？",
         "Up to what value may gifts from business partners be accepted?", "A supplier sent me a present. How pricey can it be before I must refuse?", "5,000円相当まで", "¥5,000"),
        ("受け取った贈答品は、翌営業日までに上長へ報告してください。", "Report any gift you accepted to your manager by the next business day.",
         "贈答品を受け取ったらいつまでに報告しますか。", "もらったプレゼントのことは、いつまでに上司に伝えればいい？",
         "By when must an accepted gift be reported?", "How soon do I tell my boss about a present I received?", "翌営業日まで", "the next business day"),
    ], None),
    ("retention", "文書保存規程", "Document Retention Rules", [
        ("契約書は契約終了後10年間保存します。", "Contracts are kept for ten years after they end.",
         "契約書は何年間保存しますか。", "終わった取引の契約の書類はいつまで取っておく必要がある？",
         "How long are contracts kept?", "After a deal ends, how long must we hold on to the signed papers?", "10年間", "ten years"),
        ("保存期間を過ぎた書類は、溶解処理で廃棄します。", "Documents past their retention period are destroyed by pulping.",
         "保存期間を過ぎた書類はどう廃棄しますか。", "古くなった書類はどうやって捨てるの？",
         "How are documents past their retention period destroyed?", "What do we do with old paperwork we no longer need to keep?", "溶解処理", "pulping"),
    ], None),
    ("health", "健康診断の受診ルール", "Health Check Rules", [
        ("定期健康診断は毎年6月に実施します。", "The annual health check takes place every June.",
         "定期健康診断は毎年いつ実施しますか。", "会社の健康チェックは何月にある？",
         "When is the annual health check held?", "In which month do we get our yearly medical examination?", "6月", "June"),
        ("受診できなかった人は、9月末までに指定の医療機関で受診してください。", "Anyone who missed it must see a designated clinic by the end of September.",
         "健康診断を受けられなかった場合はどうしますか。", "健診の日に休んでいた。あとから受けられる？",
         "What if I missed the health check?", "I was away on the check-up day — can I still get examined later?", "9月末までに指定の医療機関で受診", "a designated clinic by the end of September"),
    ], None),
]
POLICY_FILLER_JA = ["この規程は全従業員に適用します。", "不明な点は総務部にお問い合わせください。", "例外は部長の承認を必要とします。"]
POLICY_FILLER_EN = ["These rules apply to all employees.", "Ask General Affairs if anything is unclear.", "Exceptions need a department head's approval."]


def policy_doc(title: str, facts: list[str], lang: str, note: str = "") -> str:
    filler = POLICY_FILLER_JA if lang == "ja" else POLICY_FILLER_EN
    body = "\n".join(f"{n}. {f}" for n, f in enumerate(facts, 1))
    head = "第1条（目的）" if lang == "ja" else "Purpose"
    purpose = (f"この文書は、あおば電機株式会社の{title}を定めるものです。" if lang == "ja"
               else f"This document sets out the {title} of Aoba Denki Co., Ltd.")
    rules = "規定" if lang == "ja" else "Rules"
    sep = "" if lang == "ja" else " "
    return f"# {title}\n\n{note}## {head}\n\n{purpose}{sep}{filler[0]}\n\n## {rules}\n\n{body}\n\n{filler[1]}{'' if lang == 'ja' else ' '}{filler[2]}\n"


# ---- procedures: (slug, ja title, en title, steps ja, steps en, queries) ------------------------------------
PROCEDURES = [
    ("leave-request", "休暇申請の手順", "How to Request Leave",
     ["ワークフローシステムにログインする。", "「休暇申請」を選び、日付と種類を入力する。", "休暇開始の3営業日前までに送信する。", "上長の承認メールを確認する。"],
     ["Log in to the workflow system.", "Choose \"Leave request\" and enter the dates and type.", "Submit it at least three business days before the leave starts.", "Check for your manager's approval e-mail."],
     ("休暇申請は休暇開始の何営業日前までに送信しますか。", "How many business days before the leave must a request be submitted?", "3営業日前", "three business days")),
    ("meeting-room", "会議室の予約方法", "Booking a Meeting Room",
     ["グループウェアのカレンダーを開く。", "「設備予約」から会議室を選ぶ。", "予約は2週間先まで入れられる。", "使わなくなった予約はすぐに取り消す。"],
     ["Open the groupware calendar.", "Pick the room under \"Facilities\".", "Rooms can be booked up to two weeks ahead.", "Cancel bookings you no longer need right away."],
     ("会議室は何週間先まで予約できますか。", "How far ahead can a meeting room be booked?", "2週間先", "two weeks")),
    ("vpn", "VPN接続の設定", "Setting up the VPN",
     ["情報システム部のポータルからVPNクライアントをダウンロードする。", "接続先に vpn.aoba-denki.example を入力する。", "社員番号とパスワードでサインインする。", "初回はスマートフォンの認証アプリで承認する。"],
     ["Download the VPN client from the IT portal.", "Enter vpn.aoba-denki.example as the server.", "Sign in with your employee number and password.", "Approve the first sign-in in the authenticator app on your phone."],
     ("VPNの接続先には何を入力しますか。", "What server address is entered for the VPN?", "vpn.aoba-denki.example", "vpn.aoba-denki.example")),
    ("onboarding", "新入社員の初日の流れ", "New Employee First Day",
     ["9時に本社3階の受付に来る。", "人事部から社員証とノートPCを受け取る。", "午後に情報セキュリティ研修を受ける。", "17時に配属先の上長と面談する。"],
     ["Come to the reception on the third floor of the head office at 9:00.", "Collect your ID card and laptop from HR.", "Attend the information security training in the afternoon.", "Meet your manager at 17:00."],
     ("新入社員は初日に何時にどこへ行きますか。", "Where and when do new employees go on their first day?", "9時に本社3階の受付", "third-floor reception at 9:00")),
    ("supplies", "事務用品の注文", "Ordering Office Supplies",
     ["共有フォルダーの注文表に品名と数量を書く。", "毎週水曜日の正午に締め切る。", "総務部がまとめて発注する。", "届いた品物は総務部の棚で受け取る。"],
     ["Write the item and quantity in the order sheet in the shared folder.", "The sheet closes every Wednesday at noon.", "General Affairs places one combined order.", "Collect the items from the General Affairs shelf."],
     ("事務用品の注文の締め切りはいつですか。", "When is the office supplies order deadline?", "毎週水曜日の正午", "Wednesday at noon")),
    ("visitor", "来訪者の受付登録", "Registering a Visitor",
     ["来訪の前日までに受付システムへ登録する。", "来訪者名と会社名、到着時刻を入力する。", "当日は受付で入館証を渡す。", "帰るときに入館証を回収する。"],
     ["Register the visit in the reception system by the day before.", "Enter the visitor's name, company and arrival time.", "Hand over a visitor badge at reception on the day.", "Collect the badge when they leave."],
     ("来訪者はいつまでに受付システムへ登録しますか。", "By when must a visitor be registered?", "来訪の前日まで", "the day before")),
    ("repair", "修理受付の手順（サポート窓口）", "Handling a Repair Request (Support Desk)",
     ["お客様の氏名、品番、購入日を聞き取る。", "保証期間内かどうかを保証書で確認する。", "修理受付番号を発行してお客様に伝える。", "引き取り日を調整し、配送業者に手配する。"],
     ["Take the customer's name, model code and purchase date.", "Check the warranty card to see if it is still under warranty.", "Issue a repair number and tell it to the customer.", "Agree a pickup date and book the courier."],
     ("修理受付でお客様から聞き取る項目は何ですか。", "What does the support desk take from the customer for a repair?", "氏名、品番、購入日", "name, model code and purchase date")),
    ("password-reset", "パスワードを忘れたとき", "If You Forget Your Password",
     ["サインイン画面の「パスワードを忘れた」を押す。", "登録済みの携帯電話に届く6桁のコードを入力する。", "新しいパスワードを設定する。", "ロックされたときは内線2100へ連絡する。"],
     ["Press \"Forgot password\" on the sign-in screen.", "Enter the six-digit code sent to your registered mobile phone.", "Set a new password.", "If your account is locked, call extension 2100."],
     ("アカウントがロックされたらどこに連絡しますか。", "Who do I call when my account is locked?", "内線2100", "extension 2100")),
    ("inventory", "棚卸しの手順", "Stocktaking Procedure",
     ["棚卸しは毎年3月と9月の最終営業日に行う。", "担当者は2人1組で数える。", "数量は棚卸しアプリに入力する。", "差異が出た品目は翌日までに再確認する。"],
     ["Stocktaking is done on the last business day of March and September.", "Staff count in pairs.", "Enter the quantities in the stocktaking app.", "Recheck items with differences by the next day."],
     ("棚卸しはいつ行いますか。", "When is stocktaking done?", "3月と9月の最終営業日", "the last business day of March and September")),
    ("fire-drill", "防災訓練の手順", "Fire Drill Procedure",
     ["非常ベルが鳴ったら作業を止める。", "エレベーターは使わず、階段で避難する。", "集合場所は本社前の中央公園とする。", "各部の責任者が人数を確認して報告する。"],
     ["Stop work when the alarm sounds.", "Do not use the lifts; take the stairs.", "The assembly point is Chuo Park in front of the head office.", "Each department lead counts their people and reports."],
     ("避難の集合場所はどこですか。", "Where is the assembly point in an evacuation?", "本社前の中央公園", "Chuo Park")),
    ("invoice", "請求書の発行手順", "Issuing an Invoice",
     ["販売管理システムで受注番号を選ぶ。", "請求書の日付と支払期限を確認する。", "支払期限は請求日の翌月末とする。", "PDFを出力してお客様へ送る。"],
     ["Select the order number in the sales system.", "Check the invoice date and the due date.", "The due date is the end of the month after the invoice date.", "Export the PDF and send it to the customer."],
     ("請求書の支払期限はいつに設定しますか。", "What due date is set on invoices?", "請求日の翌月末", "the end of the month after the invoice date")),
    ("badge-loss", "社員証をなくしたとき", "If You Lose Your ID Card",
     ["すぐに総務部へ連絡し、社員証を無効にしてもらう。", "再発行申請書を提出する。", "再発行手数料として1,000円を給与から差し引く。", "新しい社員証は3営業日後に受け取れる。"],
     ["Tell General Affairs at once so the card can be disabled.", "Submit the reissue form.", "A reissue fee of ¥1,000 is deducted from your salary.", "The new card is ready after three business days."],
     ("社員証の再発行手数料はいくらですか。", "How much is the ID card reissue fee?", "1,000円", "¥1,000")),
]

# ---- FAQs (one JSONL record per entry): (ja q, ja a, en q, en a, ja paraphrase q, en paraphrase q, ja answer, en answer)
FAQS = [
    ("社内Wi-Fiのパスワードはどこで確認できますか。", "社内Wi-Fiのパスワードは、毎月1日に社内ポータルの「お知らせ」に掲載します。",
     "Where can I find the office Wi-Fi password?", "The office Wi-Fi password is posted under \"Notices\" on the intranet portal on the 1st of every month.",
     "無線LANの合言葉ってどこに載ってる？", "Where is the wireless network key published?", "社内ポータルの「お知らせ」", "the intranet portal"),
    ("落とし物はどこに届いていますか。", "落とし物は本社1階の守衛室で1か月間保管します。",
     "Where is lost property kept?", "Lost property is kept at the security office on the first floor of the head office for one month.",
     "忘れ物をしたら、どこに取りに行けばいい？", "I left my umbrella somewhere in the building — where would it end up?", "本社1階の守衛室", "the security office on the first floor"),
    ("複合機で両面印刷するには？", "複合機の印刷設定で「両面」を選び、長辺とじを指定してください。",
     "How do I print double-sided on the multifunction printer?", "In the printer settings choose \"Two-sided\" and long-edge binding.",
     "紙の裏にも印刷したいときの設定は？", "How can I get the copier to use both sides of the paper?", "「両面」を選び長辺とじ", "Two-sided, long-edge binding"),
    ("給与の支払日はいつですか。", "給与は毎月25日に支払います。25日が休日の場合は前営業日です。",
     "When is payday?", "Salaries are paid on the 25th of each month, or the business day before if the 25th is a holiday.",
     "お給料は毎月何日に振り込まれる？", "On what day of the month does my salary arrive?", "毎月25日", "the 25th"),
    ("住所が変わったらどうすればいいですか。", "住所が変わったら、2週間以内に人事システムで住所変更を申請してください。",
     "What should I do when my address changes?", "Apply for the change of address in the HR system within two weeks.",
     "引っ越したら会社に何か届け出る必要はある？", "I moved house; do I need to tell the company?", "2週間以内に人事システムで申請", "within two weeks in the HR system"),
    ("社用車を借りるには？", "社用車は、総務部の予約表で前日17時までに予約してください。",
     "How do I borrow a company car?", "Book a company car on the General Affairs sheet by 17:00 the day before.",
     "会社の車を使いたいとき、いつまでに頼めばいい？", "What is the deadline to reserve one of the pool vehicles?", "前日17時まで", "17:00 the day before"),
    ("通勤手当の上限はありますか。", "通勤手当は月50,000円を上限として実費を支給します。",
     "Is there a limit on commuting allowance?", "Commuting costs are paid at cost up to ¥50,000 a month.",
     "電車代は全部会社が払ってくれるの？", "Will the company cover my whole train pass, however expensive?", "月50,000円", "¥50,000 a month"),
    ("名札を忘れたときは？", "名札を忘れた日は、受付で一日用の仮名札を借りてください。",
     "What if I forget my name tag?", "If you forget your name tag, borrow a one-day tag at reception.",
     "ネームプレートを家に置いてきてしまった。どうしよう？", "I came in without the badge with my name on it — what now?", "受付で仮名札を借りる", "borrow a one-day tag at reception"),
    ("オフィスの空調は何時に止まりますか。", "オフィスの空調は平日20時に自動で停止します。延長は総務部に申請してください。",
     "When does the office air conditioning switch off?", "The office air conditioning switches off automatically at 20:00 on weekdays; ask General Affairs to extend it.",
     "夜遅くまで残ると冷房が切れるのは何時？", "At what time in the evening does the cooling stop?", "平日20時", "20:00"),
    ("社内で自転車通勤はできますか。", "自転車通勤は届け出制です。駐輪場は本社裏手にあります。",
     "May I cycle to work?", "Cycling to work is allowed after you register it; the bicycle parking is behind the head office.",
     "チャリで通っても大丈夫？", "Is it okay to commute on a bike?", "届け出制", "allowed after registering"),
    ("ノートPCのバッテリーが膨らんだら？", "バッテリーが膨らんだノートPCは使用を止め、情報システム部に交換を依頼してください。",
     "What if my laptop battery swells?", "Stop using a laptop with a swollen battery and ask IT for a replacement.",
     "パソコンの裏が盛り上がってきた。使い続けて平気？", "The bottom of my notebook is bulging — can I keep using it?", "使用を止め情報システム部に交換を依頼", "stop using it and ask IT for a replacement"),
    ("お客様から製品カタログを求められたら？", "製品カタログは営業部の共有棚にあり、PDF版はポータルからダウンロードできます。",
     "A customer asks for a product catalogue — where do I get one?", "Printed catalogues are on the Sales shared shelf; the PDF can be downloaded from the portal.",
     "商品のパンフレットを客先に渡したい。どこにある？", "Where can I pick up brochures of our products for a client?", "営業部の共有棚", "the Sales shared shelf"),
    ("会社のロゴデータはどこにありますか。", "ロゴデータは広報部の共有フォルダー「ブランド素材」にあります。",
     "Where are the company logo files?", "The logo files are in the PR department's shared folder \"Brand assets\".",
     "資料に会社のマークを貼りたい。元の画像はどこ？", "I need our emblem for a slide deck — where is the original artwork?", "広報部の共有フォルダー「ブランド素材」", "Brand assets"),
    ("副業はできますか。", "副業は事前に人事部へ届け出て、承認を受ければ可能です。",
     "Can I have a side job?", "Side jobs are allowed after you notify HR in advance and receive approval.",
     "休日に別のところでアルバイトしてもいい？", "Am I allowed to work for another company on weekends?", "人事部へ届け出て承認を受ければ可能", "after notifying HR and receiving approval"),
    ("宅配便を会社で受け取れますか。", "私用の宅配便を会社で受け取ることはできません。",
     "Can I have personal parcels delivered to the office?", "Personal parcels cannot be delivered to the office.",
     "ネット通販の荷物を職場に送ってもらってもいい？", "Is it fine to ship my online shopping to work?", "できない", "no"),
    ("年末年始の休業期間は？", "年末年始は12月29日から1月3日まで休業します。",
     "When is the year-end holiday?", "The company is closed from 29 December to 3 January.",
     "お正月の休みは何日から何日まで？", "Which days is the office shut over New Year?", "12月29日から1月3日", "29 December to 3 January"),
    ("社内のコピー用紙はどこにありますか。", "コピー用紙は各階の複合機の横の棚にあります。",
     "Where is copy paper kept?", "Copy paper is on the shelf next to the printer on every floor.",
     "プリンターの紙がなくなった。補充分はどこ？", "The printer ran out — where do I get more sheets?", "複合機の横の棚", "next to the printer"),
    ("スマートフォンで社内メールを読めますか。", "会社支給のスマートフォンに限り、社内メールを読むことができます。",
     "Can I read work e-mail on a smartphone?", "Work e-mail can be read on company-issued smartphones only.",
     "自分の携帯で会社のメールを見てもいい？", "Can I check office mail on my personal phone?", "会社支給のスマートフォンに限り", "company-issued smartphones only"),
    ("健康保険証はいつ届きますか。", "健康保険証は入社から約3週間で自宅に郵送されます。",
     "When will my health insurance card arrive?", "The health insurance card is mailed to your home about three weeks after you join.",
     "保険の証明書はどのくらいで手元に来る？", "How soon after joining do I get my medical insurance card?", "約3週間", "about three weeks"),
    ("喫煙所はありますか。", "本社敷地内は全面禁煙で、喫煙所はありません。",
     "Is there a smoking area?", "The head office grounds are entirely non-smoking; there is no smoking area.",
     "たばこを吸える場所は会社にある？", "Where can I go for a cigarette at the office?", "ない（全面禁煙）", "no smoking area"),
]

# ---- HTML notices (title ja/en, body ja/en, queries) -------------------------------------------------------
NOTICES = [
    ("office-move", "本社移転のお知らせ", "Head Office Relocation",
     "2025年10月14日より、本社は横浜市中区みなと町2丁目のみなとビル8階に移転します。電話番号は変わりません。",
     "From 14 October 2025 the head office moves to the 8th floor of the Minato Building, Minato-cho 2-chome, Naka-ku, Yokohama. The phone number stays the same.",
     ("本社の移転先はどこですか。", "Where is the head office moving to?", "みなとビル8階", "the 8th floor of the Minato Building")),
    ("maintenance", "基幹システムの定期メンテナンス", "Core System Maintenance",
     "販売管理システムは毎月第2土曜日の22時から翌6時まで、メンテナンスのため停止します。",
     "The sales system is down for maintenance on the second Saturday of every month from 22:00 to 6:00.",
     ("販売管理システムのメンテナンスはいつですか。", "When is the sales system maintenance?", "毎月第2土曜日の22時から翌6時", "second Saturday of every month from 22:00 to 6:00")),
    ("launch", "新製品 AP-510 発売のお知らせ", "New Product: AP-510 Launch",
     "大型の空気清浄機AP-510を、2025年11月1日に発売します。予約受付は10月15日に始まります。",
     "Our large air purifier AP-510 goes on sale on 1 November 2025. Pre-orders open on 15 October.",
     ("AP-510の予約受付はいつ始まりますか。", "When do pre-orders for the AP-510 open?", "10月15日", "15 October")),
    ("summer", "夏季休業のお知らせ", "Summer Closure",
     "8月13日から8月16日まで夏季休業とします。期間中のご注文は8月17日以降に出荷します。",
     "The company is closed for summer from 13 to 16 August. Orders placed during the closure ship from 17 August.",
     ("夏季休業中の注文はいつ出荷されますか。", "When are orders placed during the summer closure shipped?", "8月17日以降", "from 17 August")),
]

NO_ANSWER_JA = ["社員食堂の営業時間は何時までですか。", "株主総会はいつ開かれますか。", "海外出張の日当はいくらですか。", "AP-990の価格を教えてください。",
                "社内のジムは何時から使えますか。", "育児休業の給付金の申請方法は？", "冷蔵庫の製品ラインナップはありますか。", "退職金の計算方法を教えて。",
                "東京営業所の住所はどこですか。", "会社の創業者は誰ですか。", "社員旅行の行き先は？", "テレビ会議システムの録画の保存期間は？"]
NO_ANSWER_EN = ["What time does the staff canteen close?", "When is the shareholders' meeting?", "What is the daily allowance for overseas trips?",
                "What does the AP-990 cost?", "When does the company gym open?", "How do I apply for childcare leave benefits?",
                "Do you sell refrigerators?", "How is severance pay calculated?", "What is the address of the Tokyo sales office?",
                "Who founded the company?", "Where is the company trip going this year?", "How long are video-conference recordings kept?"]

SHARED = [
    ("shared/holiday-calendar.md", "# 2025年度 会社カレンダー / Company Calendar FY2025\n\n"
     "| 期間 / Period | 内容 / What |\n|---|---|\n| 4月29日〜5月6日 / 29 Apr–6 May | ゴールデンウィーク休業 / Golden Week closure |\n"
     "| 8月13日〜8月16日 / 13–16 Aug | 夏季休業 / Summer closure |\n| 12月29日〜1月3日 / 29 Dec–3 Jan | 年末年始休業 / Year-end closure |\n\n"
     "創立記念日（6月2日）は全社休日です。 The foundation day (2 June) is a company holiday.\n",
     ("創立記念日はいつですか。", "When is the company's foundation day?", "6月2日", "2 June")),
    ("shared/emergency-contacts.md", "# 緊急連絡先 / Emergency Contacts\n\n"
     "| 窓口 / Desk | 内線 / Extension |\n|---|---|\n| 守衛室 / Security | 1100 |\n| 情報システム部 / IT | 2100 |\n| 総務部 / General Affairs | 3100 |\n| 産業医 / Company doctor | 4100 |\n\n"
     "夜間・休日は守衛室が対応します。 At night and on holidays, Security answers.\n",
     ("産業医の内線番号は？", "What is the company doctor's extension?", "4100", "4100")),
]


def main() -> None:
    for sub in ("ja", "en", "shared"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
        (HERE / sub).mkdir(parents=True)
    q_ja: list[dict] = []
    q_en: list[dict] = []

    def write(rel: str, text: str) -> str:
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return rel.split("/", 1)[1] if rel.startswith(("ja/", "en/")) else rel

    # products and error tables
    for p in products():
        ja_id = write(f"ja/manuals/{p['code'].lower()}.md", manual_ja(p))
        en_id = write(f"en/manuals/{p['code'].lower()}.md", manual_en(p))
        a, b = product_queries(p, ja_id, en_id)
        q_ja += a
        q_en += b
    for prefix, ja, en, *_ in SERIES:
        ja_id = write(f"ja/manuals/{prefix.lower()}-errors.md", errors_ja(prefix, ja))
        en_id = write(f"en/manuals/{prefix.lower()}-errors.md", errors_en(prefix, en))
        code, m_ja, m_en, fix_ja, fix_en = RNG.choice(ERRORS[prefix])
        q_ja.append({"group": "code", "query": f"{ja}で{code}が表示された。どうすればいい？", "answer": fix_ja, "gold": [ja_id]})
        q_en.append({"group": "code", "query": f"My {en} shows {code}. What should I do?", "answer": fix_en, "gold": [en_id]})
    # policies (+ superseded versions)
    for slug, title_ja, title_en, facts, old in POLICIES:
        ja_id = write(f"ja/policies/{slug}.md", policy_doc(title_ja, [f[0] for f in facts], "ja", "2024年4月1日改定（現行版）\n\n"))
        en_id = write(f"en/policies/{slug}.md", policy_doc(title_en, [f[1] for f in facts], "en", "Revised 1 April 2024 (current version)\n\n"))
        if old is not None:
            write(f"ja/policies/{slug}-2023.md", policy_doc(f"{title_ja}（旧版）", [old[0]] + [f[0] for f in facts[1:]], "ja",
                                                             "2023年4月1日制定。この版は2024年4月1日の改定により廃止されました。\n\n"))
            write(f"en/policies/{slug}-2023.md", policy_doc(f"{title_en} (superseded)", [old[1]] + [f[1] for f in facts[1:]], "en",
                                                             "Issued 1 April 2023; superseded by the revision of 1 April 2024.\n\n"))
        for n, f in enumerate(facts):
            versioned = old is not None and n == 0
            q_ja.append({"group": "version" if versioned else "same", "query": f[2], "answer": f[6], "gold": [ja_id]})
            q_ja.append({"group": "paraphrase", "query": f[3], "answer": f[6], "gold": [ja_id]})
            q_en.append({"group": "version" if versioned else "same", "query": f[4], "answer": f[7], "gold": [en_id]})
            q_en.append({"group": "paraphrase", "query": f[5], "answer": f[7], "gold": [en_id]})
            if n == 0:  # cross-lingual: English question, Japanese document (ja suite) and the reverse (en suite)
                q_ja.append({"group": "cross", "query": f[4], "answer": f[6], "gold": [ja_id]})
                q_en.append({"group": "cross", "query": f[2], "answer": f[7], "gold": [en_id]})
    # procedures
    for slug, title_ja, title_en, steps_ja, steps_en, (qj, qe, aj, ae) in PROCEDURES:
        ja_id = write(f"ja/procedures/{slug}.md", f"# {title_ja}\n\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps_ja, 1))
                      + "\n\n手順で分からないことは、担当部署にお問い合わせください。\n")
        en_id = write(f"en/procedures/{slug}.md", f"# {title_en}\n\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps_en, 1))
                      + "\n\nIf a step is unclear, ask the department in charge.\n")
        q_ja.append({"group": "same", "query": qj, "answer": aj, "gold": [ja_id]})
        q_en.append({"group": "same", "query": qe, "answer": ae, "gold": [en_id]})
    # FAQs: one JSONL file per language, one document per line
    faq_ja = [json.dumps({"question": f[0], "answer": f[1]}, ensure_ascii=False) for f in FAQS]
    faq_en = [json.dumps({"question": f[2], "answer": f[3]}, ensure_ascii=False) for f in FAQS]
    write("ja/faq/faq.jsonl", "\n".join(faq_ja) + "\n")
    write("en/faq/faq.jsonl", "\n".join(faq_en) + "\n")
    for line, f in enumerate(FAQS, 1):
        q_ja.append({"group": "paraphrase", "query": f[4], "answer": f[6], "gold": [f"faq/faq.jsonl:{line}"]})
        q_en.append({"group": "paraphrase", "query": f[5], "answer": f[7], "gold": [f"faq/faq.jsonl:{line}"]})
    # HTML notices
    for slug, title_ja, title_en, body_ja, body_en, (qj, qe, aj, ae) in NOTICES:
        page = "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>p{{margin:0}}</style></head>" \
               "<body><h1>{t}</h1><p>{b}</p><p>{c}</p><script>console.log('x')</script></body></html>\n"
        ja_id = write(f"ja/notices/{slug}.html", page.format(t=title_ja, b=body_ja, c="総務部"))
        en_id = write(f"en/notices/{slug}.html", page.format(t=title_en, b=body_en, c="General Affairs"))
        q_ja.append({"group": "same", "query": qj, "answer": aj, "gold": [ja_id]})
        q_en.append({"group": "same", "query": qe, "answer": ae, "gold": [en_id]})
    # bilingual documents shared by both suites
    for rel, text, (qj, qe, aj, ae) in SHARED:
        write(rel, text)
        q_ja.append({"group": "same", "query": qj, "answer": aj, "gold": [rel.split("/", 1)[1]]})
        q_en.append({"group": "same", "query": qe, "answer": ae, "gold": [rel.split("/", 1)[1]]})
    for q in NO_ANSWER_JA:
        q_ja.append({"group": "none", "query": q, "answer": "", "gold": []})
    for q in NO_ANSWER_EN:
        q_en.append({"group": "none", "query": q, "answer": "", "gold": []})
    for lang, qs in (("ja", q_ja), ("en", q_en)):
        with open(HERE / f"queries-{lang}.jsonl", "w", encoding="utf-8") as fh:
            for n, q in enumerate(qs, 1):
                fh.write(json.dumps({"id": f"{lang}-{n:03d}", **q}, ensure_ascii=False) + "\n")
    n_docs = sum(1 for p in HERE.rglob("*") if p.is_file() and p.suffix in (".md", ".html")) + 2 * len(FAQS)
    print(f"{n_docs} documents, {len(q_ja)} ja + {len(q_en)} en queries")


if __name__ == "__main__":
    main()
