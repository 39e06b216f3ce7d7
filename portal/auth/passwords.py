"""Password quality (対策基準 6.4(1), SECURITY.md) and argon2id hashing.

Rules: 12–128 characters of any kind; not one of the most common passwords; not built on the
user's own e-mail, name or organisation name; not a single repeated character.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import Flask, current_app

MIN_LENGTH = 12
MAX_LENGTH = 128


@cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("portal.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        _fold(line) for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _fold(value: str) -> str:
    return "".join(unicodedata.normalize("NFKC", value).casefold().split())


def password_problems(
    password: str, *, email: str = "", name: str = "", organisation_name: str = ""
) -> list[str]:
    """The reasons ``password`` is refused, in Japanese; empty when it is acceptable."""
    problems: list[str] = []
    length = len(password)
    if length < MIN_LENGTH:
        problems.append(f"パスワードは{MIN_LENGTH}文字以上にしてください。")
    if length > MAX_LENGTH:
        problems.append(f"パスワードは{MAX_LENGTH}文字以内にしてください。")
    folded = _fold(password)
    if folded in _common_passwords():
        problems.append("よく使われるパスワードのため使用できません。")
    elif len(set(folded)) <= 2 and length >= MIN_LENGTH:
        problems.append("同じ文字や2種類程度の文字を繰り返しただけのパスワードは使用できません。")
    personal = []
    if email:
        personal += [_fold(email), _fold(email.split("@", 1)[0])]
    for value in (name, organisation_name):
        if value:
            personal.append(_fold(value))
    if any(len(p) >= 3 and p in folded for p in personal):
        problems.append("メールアドレス、氏名、団体名・会社名を含むパスワードは使用できません。")
    return problems


def init_app(app: Flask) -> None:
    app.extensions["password_hasher"] = PasswordHasher(
        time_cost=app.config["ARGON2_TIME_COST"],
        memory_cost=app.config["ARGON2_MEMORY_COST"],
        parallelism=app.config["ARGON2_PARALLELISM"],
        type=Type.ID,
    )


def _hasher() -> PasswordHasher:
    return current_app.extensions["password_hasher"]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, new_hash). ``new_hash`` is set when the parameters changed and it must be stored."""
    hasher = _hasher()
    if not stored_hash:
        # Spend the same time as a real check so unknown accounts are not told apart.
        hasher.hash(password)
        return False, None
    try:
        hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    return True, hasher.hash(password) if hasher.check_needs_rehash(stored_hash) else None


def dummy_verify(password: str) -> None:
    verify_password(None, password)
