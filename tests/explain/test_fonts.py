"""Class names in the figures: CJK characters drawn with a fallback font, characters no font has said once."""

import logging
import subprocess
import sys
import warnings
from pathlib import Path

from PIL import Image

from explain import ExplainConfig, RunOptions, run_explanations
from explain.fonts import class_name_fonts
from tests.explain.test_explainer import red_square_detector, red_square_scene


def scenes(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        paths.append(folder / f"scene-{index}.png")
        Image.fromarray(red_square_scene(seed=index)).save(paths[-1])
    return paths


def run_recording_warnings(paths, out, names):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_explanations(paths, red_square_detector, ExplainConfig(num_samples=24, num_segments=6), out,
                                   RunOptions(progress=False), label_headers=names)
    assert summary["totals"]["failed"] == []
    return [str(warning.message) for warning in caught]


def test_japanese_and_chinese_class_names_are_drawn_with_a_fallback_font(tmp_path):
    """DejaVu Sans has no CJK characters: every one drew as an empty box and was a warning on the terminal."""
    assert len(class_name_fonts()) > 1, ("no CJK font on this machine: `make fonts` installs Debian's "
                                         "fonts-droid-fallback")
    messages = run_recording_warnings(scenes(tmp_path / "in", 1), tmp_path / "out", ("猫と犬", "红色方块"))
    assert not [message for message in messages if "missing from" in message], messages
    assert "猫と犬" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_a_character_no_font_has_is_drawn_as_a_replacement_and_said_once(tmp_path, caplog):
    from matplotlib.text import Text

    from explain import Explanation
    from explain.render import plot_explanation

    name = "scribe 𓀀 (test_fonts)"  # an Egyptian hieroglyph: in none of the fonts here
    with caplog.at_level(logging.WARNING, logger="explain.fonts"):
        messages = run_recording_warnings(scenes(tmp_path / "in", 2), tmp_path / "out", (name, "other"))
    assert not [message for message in messages if "missing from" in message], messages
    said = [record.getMessage() for record in caplog.records if record.name == "explain.fonts"]
    assert said == [f"class name {name!r} has characters no installed font draws (𓀀): the figures show � for them, "
                    "the report has the name whole; install a font that has them (for Chinese, Japanese and "
                    "Korean, Debian's fonts-noto-cjk)"]
    explanation = Explanation.load(tmp_path / "out" / "scene-0.png_shap.npz")
    texts = [text.get_text() for text in plot_explanation(explanation).findobj(Text)]
    assert "box 1: scribe � (test_fonts) 1.00" in texts
    assert name in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_characters_in_no_font_are_replaced_printable_or_not():
    """A private-use, an unassigned and a bidi-isolate character were kept (only printable ones were checked):
    matplotlib warned of each and drew a box."""
    from explain.fonts import drawable_name

    assert drawable_name("\ue000circle sq\u0378uare \u2067x\u2069") == "�circle sq�uare �x�"
    assert drawable_name("two\nlines") == "two\nlines"


def test_a_matplotlibrc_naming_a_font_that_is_not_installed_still_draws_latin_names(tmp_path):
    """font.family: Arial (not installed) made the fonts ['Arial', 'Droid Sans Fallback']: matplotlib skipped
    Arial and the fallback has no Latin letters, so every title was empty boxes and a warning per glyph."""
    (tmp_path / "matplotlibrc").write_text("font.family: Arial\n")
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from matplotlib.figure import Figure\n"
            "from explain.fonts import class_name_fonts, drawable_name\n"
            "figure = Figure(); axis = figure.subplots()\n"
            "axis.set_title(drawable_name('square 0.97 猫'), fontfamily=class_name_fonts())\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always'); figure.savefig('/dev/null', format='png')\n"
            "print(class_name_fonts()); print(sum('missing from' in str(w.message) for w in caught))\n")
    repo = Path(__file__).resolve().parents[2]
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=repo,
                               env={"MPLCONFIGDIR": str(tmp_path), "PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr
    fonts, missing = completed.stdout.splitlines()
    assert fonts.startswith("['DejaVu Sans'") and missing == "0", (fonts, missing)
