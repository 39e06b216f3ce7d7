"""Characters the PDF fonts can draw. A character that no bundled Japanese font has (emoji, 𠮷,
scripts outside JIS) would be drawn as WeasyPrint's missing glyph and, worse, spoil the text
layer of the whole run (copy-paste and search return garbage). Such characters are printed as
〓 (ゲタ, the customary mark for a character that cannot be typeset); invisible format
characters (right-to-left marks, joiners) are kept, since they draw nothing."""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont

FONT_FILES = ("ipaexfont-mincho/ipaexm.ttf", "ipaexfont-gothic/ipaexg.ttf")
FONT_DIRS = (Path("/usr/share/fonts/opentype"), Path("/usr/share/fonts/truetype"))
GETA = "〓"


@cache
def coverage() -> frozenset[int] | None:
    """Code points both IPAex fonts map; None when the fonts are not installed."""
    sets = []
    for name in FONT_FILES:
        path = next((d / name for d in FONT_DIRS if (d / name).is_file()), None)
        if path is None:
            return None
        with TTFont(path, lazy=True) as font:
            sets.append(set(font.getBestCmap()))
    return frozenset(set.intersection(*sets))


def printable(text: str) -> str:
    covered = coverage()
    if covered is None or all(ord(c) in covered for c in text):
        return text
    return "".join(
        c if ord(c) in covered or c in "\n\t" or unicodedata.category(c) == "Cf" else GETA
        for c in text
    )


def printable_value(value: Any) -> Any:
    """``printable`` applied to every string in an answer (lists and table rows included)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_value(v) for v in value]
    if isinstance(value, dict):
        return {k: printable_value(v) for k, v in value.items()}
    return value
