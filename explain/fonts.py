"""Fonts for the class names in the figures: matplotlib's configured font, then CJK fonts found on the system.

matplotlib's default font (DejaVu Sans) has no Chinese, Japanese or Korean characters: a class
name such as '猫' drew as empty boxes, and every such character was a warning on the terminal.
``class_name_fonts`` adds the CJK fonts installed on the machine as fallbacks (matplotlib
draws each character with the first font that has it); ``drawable_name`` replaces a character no
font has with '�' and says so once per name (the report and analysis.json keep the name whole).
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

__all__ = ["FALLBACK_FONT_FILES", "class_name_fonts", "drawable_name"]

logger = logging.getLogger(__name__)

# File names (without suffix, case ignored) of fonts with CJK characters, first found first used: Noto CJK
# and Source Han (Debian fonts-noto-cjk), Droid Sans Fallback (fonts-droid-fallback), WenQuanYi, and the
# usual ones of Windows and macOS. Colour emoji fonts are left out: Agg cannot draw their bitmaps.
FALLBACK_FONT_FILES = ("NotoSansCJK-Regular", "NotoSansCJKjp-Regular", "NotoSansCJKsc-Regular",
                       "SourceHanSans-Regular", "DroidSansFallbackFull", "DroidSansFallback", "wqy-zenhei",
                       "wqy-microhei", "msyh", "msgothic", "malgun", "simhei", "PingFang", "Hiragino Sans GB",
                       "AppleSDGothicNeo", "Arial Unicode")
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"

_lock = threading.Lock()
_named: set[str] = set()  # names already said to have characters no font draws


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """(font families to name in a text, the code points some of them draw); read once per process."""
    import matplotlib
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    families = list(matplotlib.rcParams["font.family"])
    paths = [font_manager.findfont(font_manager.FontProperties(family=families))]
    wanted = {name.lower(): rank for rank, name in enumerate(FALLBACK_FONT_FILES)}
    found = sorted((wanted[Path(path).stem.lower()], path) for path in font_manager.findSystemFonts()
                   if Path(path).stem.lower() in wanted)
    for _, path in found:
        try:
            font = FT2Font(path)
        except (OSError, RuntimeError):  # unreadable: matplotlib could not draw with it either
            continue
        if font.family_name not in families:
            # matplotlib's font list is cached on first use: a font installed since is not in it
            if font.family_name not in {entry.name for entry in font_manager.fontManager.ttflist}:
                font_manager.fontManager.addfont(path)
            families.append(font.family_name)
            paths.append(path)
    code_points: set[int] = set()
    for path in paths:
        try:
            code_points.update(FT2Font(path).get_charmap())
        except (OSError, RuntimeError):
            continue
    return tuple(families), frozenset(code_points)


def class_name_fonts() -> list[str]:
    """The font families a figure's text with class names is drawn with: the configured ones, then fallbacks."""
    with _lock:
        return list(_fonts()[0])


def drawable_name(name: str) -> str:
    """``name`` with each character that none of ``class_name_fonts`` has replaced by '�'.

    The first time a name has such characters, one warning says which and how to get a font that
    has them. Whitespace and control characters are kept (matplotlib draws no glyph for them).
    """
    with _lock:
        code_points = _fonts()[1]
    missing = [character for character in name
               if ord(character) not in code_points and not character.isspace() and character.isprintable()]
    if not missing:
        return name
    with _lock:
        first = name not in _named
        _named.add(name)
    if first:
        logger.warning("class name %s has characters no installed font draws (%s): the figures show %s for "
                       "them, the report has the name whole; install a font that has them (Debian: "
                       "fonts-noto-cjk or fonts-droid-fallback)", repr(name), " ".join(sorted(set(missing))),
                       REPLACEMENT)
    stand_in = REPLACEMENT if ord(REPLACEMENT) in code_points else "?"
    return "".join(stand_in if character in missing else character for character in name)
