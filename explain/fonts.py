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

    configured = list(matplotlib.rcParams["font.family"])
    families: list[str] = []
    paths: list[str] = []

    def add(path: str) -> None:
        try:
            name = FT2Font(path).family_name
        except (OSError, RuntimeError):  # unreadable: matplotlib could not draw with it either
            return
        if name not in families:
            # matplotlib's font list is cached on first use: a font installed since is not in it
            if name not in {entry.name for entry in font_manager.fontManager.ttflist}:
                font_manager.fontManager.addfont(path)
            families.append(name)
            paths.append(path)

    # the configured families that are installed, by the names of the fonts they resolve to: a family
    # that is not ('Arial' on Linux) left the fallbacks alone to draw Latin names, as empty boxes
    for family in configured:
        try:
            add(font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False))
        except ValueError:
            continue
    if not families:  # none installed: the font matplotlib falls back to (DejaVu Sans)
        add(font_manager.findfont(font_manager.FontProperties(family=configured)))
    wanted = {name.lower(): rank for rank, name in enumerate(FALLBACK_FONT_FILES)}
    for _, path in sorted((wanted[Path(path).stem.lower()], path) for path in font_manager.findSystemFonts()
                          if Path(path).stem.lower() in wanted):
        add(path)
    code_points: set[int] = set()
    for path in paths:
        code_points.update(FT2Font(path).get_charmap())
    return tuple(families), frozenset(code_points)


def class_name_fonts() -> list[str]:
    """The font families a figure's text with class names is drawn with: the configured ones, then fallbacks."""
    with _lock:
        return list(_fonts()[0])


def drawable_name(name: str) -> str:
    """``name`` with each character that none of ``class_name_fonts`` has replaced by '�'.

    The first time a name has such characters, one warning says which (escaped when not printable)
    and how to get a font that has them. A line break is kept.
    """
    with _lock:
        code_points = _fonts()[1]
    # every character no font has, printable or not (a private-use or unassigned one, a bidi control):
    # matplotlib warned of each and drew a box; a line break is kept (it breaks the line)
    missing = [character for character in name if ord(character) not in code_points and character != "\n"]
    if not missing:
        return name
    with _lock:
        first = name not in _named
        _named.add(name)
    if first:
        logger.warning("class name %s has characters no installed font draws (%s): the figures show %s for "
                       "them, the report has the name whole; install a font that has them (for Chinese, "
                       "Japanese and Korean, Debian's fonts-noto-cjk)", repr(name),
                       " ".join(ascii(character)[1:-1] if not character.isprintable() else character
                                for character in sorted(set(missing))), REPLACEMENT)
    stand_in = REPLACEMENT if ord(REPLACEMENT) in code_points else "?"
    return "".join(stand_in if character in missing else character for character in name)
