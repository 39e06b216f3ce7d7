"""法人番号 (corporate number): 13 digits, the first a check digit over the other twelve.

The check digit is 9 − (Σ Pn × Qn mod 9), where Pn is the n-th digit of the 12-digit base
counted from the right and Qn is 1 for odd n and 2 for even n (国税庁 法人番号の指定等に関する省令).
"""

from __future__ import annotations

import unicodedata


def normalise(value: str) -> str:
    """Full-width digits to ASCII, hyphens and spaces removed."""
    text = unicodedata.normalize("NFKC", value or "")
    return "".join(ch for ch in text if ch not in " -‐−ー")


def check_digit(base12: str) -> int:
    if len(base12) != 12 or not base12.isascii() or not base12.isdigit():
        raise ValueError("base must be 12 ASCII digits")
    total = sum(
        int(digit) * (1 if n % 2 == 1 else 2) for n, digit in enumerate(reversed(base12), start=1)
    )
    return 9 - total % 9


def is_valid(value: str) -> bool:
    number = normalise(value)
    if len(number) != 13 or not number.isascii() or not number.isdigit():
        return False
    return int(number[0]) == check_digit(number[1:])


def with_check_digit(base12: str) -> str:
    return f"{check_digit(base12)}{base12}"
