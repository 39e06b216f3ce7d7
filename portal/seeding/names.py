"""Names of the large dataset: vendor companies with valid 法人番号, addresses, representatives
and contact people, all drawn from a seeded random generator (the same run gives the same data).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from portal.vendors.corporate_number import with_check_digit

CORES = (
    "あおば", "ひかり", "みらい", "やまと", "ときわ", "つばさ", "なごみ", "はるか", "いずみ",
    "みどり", "さつき", "かえで", "しらかば", "あさひ", "すばる", "こだま", "ほくと", "なぎさ",
    "北斗", "東和", "西都", "南海", "中央", "大和", "平和", "協和", "昭栄", "三栄", "共栄", "富士",
)  # fmt: skip
BUSINESSES = (
    "情報システム", "データサービス", "クラウドサービス", "ソリューションズ", "ネットワーク",
    "テクノロジー", "システム開発", "情報処理センター", "ビジネスサービス", "コンピュータ",
    "総合印刷", "データ入力センター", "電算", "ITサービス", "セキュリティ",
)  # fmt: skip
FORMS = ("株式会社{}", "{}株式会社", "有限会社{}")
REGIONS = (
    "",
    "東京",
    "大阪",
    "名古屋",
    "福岡",
    "札幌",
    "仙台",
    "広島",
    "横浜",
    "京都",
    "神戸",
    "新潟",
)
PLACES = (
    ("東京都", "千代田区丸の内"), ("東京都", "港区芝浦"), ("東京都", "新宿区西新宿"),
    ("大阪府", "大阪市北区梅田"), ("愛知県", "名古屋市中区栄"), ("福岡県", "福岡市博多区博多駅前"),
    ("北海道", "札幌市中央区北一条西"), ("宮城県", "仙台市青葉区一番町"), ("広島県", "広島市中区紙屋町"),
    ("神奈川県", "横浜市西区みなとみらい"), ("埼玉県", "さいたま市大宮区桜木町"), ("千葉県", "千葉市美浜区中瀬"),
    ("京都府", "京都市下京区烏丸通"), ("兵庫県", "神戸市中央区三宮町"), ("静岡県", "静岡市葵区追手町"),
    ("新潟県", "新潟市中央区万代"), ("岡山県", "岡山市北区本町"), ("熊本県", "熊本市中央区花畑町"),
)  # fmt: skip
SURNAMES = (
    "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
    "吉田", "山田", "佐々木", "山口", "松本", "井上", "木村", "林", "斎藤", "清水",
)  # fmt: skip
GIVEN = (
    "太郎", "一郎", "健", "誠", "大輔", "翔太", "花子", "恵子", "美咲", "陽子",
    "直樹", "裕子", "和也", "真由美", "拓也", "彩", "浩二", "明美", "亮", "智子",
)  # fmt: skip
KANJI_DIGITS = "〇一二三四五六七八九"
# 法人番号 bases of the dataset start with this digit and a counter (checked against the
# numbers already registered, which are skipped).
NUMBER_PREFIX = "7"


@dataclass(frozen=True)
class Company:
    corporate_number: str
    name: str
    address: str
    representative: str
    contact: str  # the vendor contact person's name
    email: str


def person(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"


def companies(rng: random.Random, count: int, taken: set[str]) -> Iterator[Company]:
    """``count`` companies with distinct names and valid 法人番号 not in ``taken``."""
    names = [
        form.format(f"{region}{core}{business}")
        for region in REGIONS
        for core in CORES
        for business in BUSINESSES
        for form in FORMS
    ]
    rng.shuffle(names)
    if count > len(names):
        raise ValueError(f"at most {len(names)} companies")
    serial = 0
    for index in range(count):
        while True:
            serial += 1
            number = with_check_digit(f"{NUMBER_PREFIX}{serial:011d}")
            if number not in taken:
                break
        prefecture, town = rng.choice(PLACES)
        block = f"{KANJI_DIGITS[rng.randint(1, 9)]}丁目{rng.randint(1, 30)}番{rng.randint(1, 20)}号"
        yield Company(
            corporate_number=number,
            name=names[index],
            address=f"{prefecture}{town}{block}",
            representative=f"代表取締役 {person(rng)}",
            contact=person(rng),
            email=f"tantou@vendor{index + 1:05d}.example.com",
        )
