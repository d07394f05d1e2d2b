"""report.html: one portable page with numbered heatmaps, the smallest sets and the curves, checked in Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from explain import ExplainConfig, RunOptions, run_explanations
from explain.report import write_report
from tests.explain.test_explainer import (
    SQUARE,
    additive_classifier,
    pixel_weights,
    red_square_detector,
    red_square_scene,
    textured_image,
)
from tests.report_html import embedded_files, page_text, parse_report

# names a report must show and link as they are: '#' starts a fragment, '?' a query, '%' an escape
ODD_NAMES = ('scène #1 ?50% "quoted" it\'s.png', "plain.png")


def big_scene(seed: int) -> np.ndarray:
    """red_square_scene at 4x (256 x 256): large enough for readable figures."""
    return np.kron(red_square_scene(seed), np.ones((4, 4, 1), dtype=np.uint8))


def big_detector(batch):
    return red_square_detector(np.asarray(batch)[:, ::4, ::4])


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    """A run with metrics over two images, one of them with every awkward character in its name."""
    root = tmp_path_factory.mktemp("report")
    images = root / "images"
    images.mkdir()
    for seed, name in enumerate(ODD_NAMES):
        Image.fromarray(big_scene(seed)).save(images / name)
    config = ExplainConfig(num_samples=80, num_segments=12, metrics=True)
    summary = run_explanations([images], big_detector, config, root / "out", RunOptions(progress=False),
                               label_headers=["square", "corner"])
    return root / "out", summary


# --------------------------------------------------------------------------------------
# the smallest sets, from the curves alone
# --------------------------------------------------------------------------------------

def test_smallest_sets_read_the_curves_in_rank_order():
    from explain.metrics import smallest_sets

    values = np.array([0.1, 0.5, -0.2, 0.3])  # rank: 1, 3, 0, 2
    insertion = [0.0, 0.5, 0.85, 0.95, 1.0]   # 90% of the rise from 0 to 1 needs the top 3
    deletion = [1.0, 0.4, 0.05, 0.0, 0.0]      # at most 10% is left once the top 2 are gone
    sets = smallest_sets(values, deletion, insertion, base_value=0.0, prediction=1.0)
    assert sets["keep"] == {"segments": [1, 3, 0], "score": 0.95}
    assert sets["remove"] == {"segments": [1, 3], "score": 0.05}
    shifted = smallest_sets(values, [v + 0.5 for v in deletion], [v + 0.5 for v in insertion], 0.5, 1.5)
    assert shifted["keep"]["segments"] == [1, 3, 0] and shifted["remove"]["segments"] == [1, 3]
    assert smallest_sets(values, deletion, insertion, base_value=1.0, prediction=1.0) is None


def test_the_sets_of_a_run_are_in_analysis_json(odd_run):
    out, summary = odd_run
    analysis = json.loads((out / "analysis.json").read_text())
    for item in analysis["images"]:
        square, corner = item["targets"]
        segments = np.load(out / f"{item['stem']}_shap.npz")["segments"]
        inside = np.zeros(segments.shape, bool)
        inside[SQUARE[0].start * 4:SQUARE[0].stop * 4, SQUARE[1].start * 4:SQUARE[1].stop * 4] = True
        kept = np.isin(segments, square["keeps_score"]["segments"])
        # the score is the visible fraction of the square's pixels that the detector reads (every
        # 4th row and column): the kept segments cover 90% of them
        seen_kept, seen_inside = kept[::4, ::4], inside[::4, ::4]
        assert (seen_kept & seen_inside).sum() >= 0.9 * square["prediction"] * seen_inside.sum()
        assert (kept & inside).sum() >= 0.85 * inside.sum()  # and most of its pixels
        assert square["keeps_score"]["score"] >= 0.9 * square["prediction"]
        assert square["removes_score"]["score"] <= 0.1 * square["prediction"]
        assert len(square["insertion_curve"]) == len(square["deletion_curve"]) == item["num_segments_used"] + 1
        assert corner["keeps_score"] is None  # a constant score: nothing keeps or removes it


def test_segment_numbers_sit_inside_their_segment_even_when_it_is_not_convex():
    from explain.render import segment_label_positions

    segments = np.zeros((60, 60), np.int32)
    segments[10:50, 10:50] = 1  # a C shape: its centroid lies in the hole, which is segment 2
    segments[20:40, 20:50] = 2
    centroid = np.argwhere(segments == 1).mean(axis=0)
    assert segments[int(centroid[0]), int(centroid[1])] == 2
    positions = segment_label_positions(segments)
    assert positions.shape == (3, 2)
    for number, (x, y) in enumerate(positions):
        assert segments[int(y), int(x)] == number
    assert segments[int(positions[1][1]), int(positions[1][0])] == 1



def _boxes_meet(first, second) -> bool:
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def test_numbers_go_inside_large_segments_beside_small_ones_and_never_meet_however_many_places_are_checked_at_once(
        monkeypatch):
    # 40 segments of 3 x 3 pixels packed in a corner of a large one: no number fits inside them, so
    # each goes beside, the first free place by distance often past the first chunk of candidates.
    import explain.render as render

    segments = np.zeros((120, 120), np.int32)
    for number in range(1, 41):
        row, col = divmod(number - 1, 8)
        segments[6 + 3 * row:9 + 3 * row, 6 + 3 * col:9 + 3 * col] = number
    numbers = [0, *range(40, 0, -1)]

    def label_size(text):
        return 6.0 * len(text) + 4.0, 12.0

    labels = render.place_segment_labels(segments, numbers, label_size)
    monkeypatch.setattr(render, "_CHUNK", 1)  # one candidate at a time: the rule as written
    assert render.place_segment_labels(segments, numbers, label_size) == labels
    assert [label.segment for label in labels] == numbers
    big, small = labels[0], labels[1:]
    assert big.anchor is None and segments[int(big.centre[1]), int(big.centre[0])] == 0
    for label in small:
        assert label.anchor is not None and segments[int(label.anchor[1]), int(label.anchor[0])] == label.segment
    for first in range(len(labels)):
        x0, y0, x1, y1 = labels[first].box
        assert 0 <= x0 and 0 <= y0 and x1 <= 120 and y1 <= 120
        for second in range(first + 1, len(labels)):
            assert not _boxes_meet(labels[first].box, labels[second].box), (labels[first], labels[second])

# --------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------

def test_the_report_is_one_file_that_embeds_every_image(odd_run, tmp_path):
    out, summary = odd_run
    elsewhere = tmp_path / "moved"
    elsewhere.mkdir()
    shutil.copy(out / "report.html", elsewhere / "report.html")  # the report travels alone
    embedded = embedded_files(elsewhere / "report.html")
    jpegs = sorted(name for item in summary["images"] for name in item["files"] if name.endswith(".jpeg"))
    assert sorted(embedded) == jpegs and len(jpegs) == 2 * 3
    for name, data in embedded.items():
        assert data == (out / name).read_bytes()
        with Image.open(io.BytesIO(data)) as decoded:
            assert decoded.format == "JPEG"


def test_past_its_embedding_budget_a_report_links_the_later_images_figures_and_says_so(odd_run, tmp_path):
    # A run of thousands of images made a page of gigabytes, built in memory, that no browser opens.
    out, summary = odd_run
    files = [[name for name in item["files"] if name.endswith(".jpeg")] for item in summary["images"]]
    first_bytes = sum((out / name).stat().st_size for name in files[0])
    for budget, embedded in ((first_bytes, 1), (first_bytes - 1, 0)):
        report = tmp_path / f"report-{budget}.html"
        write_report(summary, report, files_dir=out, embed_bytes=budget)
        figures = parse_report(report).figures
        assert len(figures) == 6
        for figure in figures:
            name = unquote(figure["href"])
            if name in files[0][:3 * embedded]:
                assert base64.b64decode(figure["src"].split(",", 1)[1]) == (out / name).read_bytes()
            else:  # linked: the same relative URL as its caption's link, a file beside the report
                assert figure["src"] == figure["href"] and (out / name).is_file(), figure
        told = (f"This page embeds the figures of image 1 of 2 (their files, up to {budget / 2**20:g} MiB in all); "
                "those of image 2 are links to their files beside this page" if embedded else
                "The figures of images 1 to 2 are links to their files beside this page (the first image's files "
                f"alone are over the {budget / 2**20:g} MiB a page embeds at most)")
        assert told + ": keep the page in its folder." in page_text(report)
    write_report(summary, tmp_path / "all.html", files_dir=out)  # the default budget: all embedded, no note
    assert len(embedded_files(tmp_path / "all.html")) == 6 and "This page embeds" not in page_text(tmp_path / "all.html")
    with pytest.raises(ValueError, match="embed_bytes must be >= 0, got -1"):
        write_report(summary, tmp_path / "negative.html", files_dir=out, embed_bytes=-1)


def test_a_report_that_fails_half_way_leaves_the_earlier_page_whole(odd_run, tmp_path, monkeypatch):
    # The page is written image by image: an error in the second image cut a good report.html in half.
    import explain.report as report_module

    out, summary = odd_run
    page = tmp_path / "report.html"
    write_report(summary, page, files_dir=out)
    before = page.read_bytes()
    sections = report_module._image_section

    def second_fails(number, *args):
        if number == 2:
            raise RuntimeError("disk full")
        return sections(number, *args)

    monkeypatch.setattr(report_module, "_image_section", second_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(summary, page, files_dir=out)
    assert page.read_bytes() == before and sorted(path.name for path in tmp_path.iterdir()) == ["report.html"]


def test_odd_names_display_and_link_correctly(odd_run):
    out, summary = odd_run
    report = parse_report(out / "report.html")
    text = "".join(report.texts)
    stems = {item["stem"] for item in summary["images"]}
    assert stems == {'scène #1 ?50% "quoted" it\'s.png', "plain.png"}  # output_stem keeps .png
    for stem in stems:
        assert stem in text and f"{stem}_shap.npz" in text
    files = [unquote(href) for href in report.links if not href.startswith("#")]
    assert 'scène #1 ?50% "quoted" it\'s.png_shap.npz' in files
    for name in files:
        assert (out / name).is_file(), name  # each link, URL-decoded, names a file beside the report
    assert {figure["alt"] for figure in report.figures} >= {
        'scène #1 ?50% "quoted" it\'s.png: every explained object',
        'scène #1 ?50% "quoted" it\'s.png, box 1: square 1.000: the image with the box and the heatmap'}


def test_the_report_shows_the_sets_and_the_curves_per_target(odd_run):
    out, summary = odd_run
    text = page_text(out / "report.html")
    html = (out / "report.html").read_text()
    for item in summary["images"]:
        square = item["targets"][0]
        kept = square["keeps_score"]["segments"]
        total = item["num_segments_used"]
        top = {entry["segment"] for entry in square["top_segments"]}
        left_out = [segment for segment in range(total) if segment not in kept]
        if len(set(left_out) - top) >= len(set(kept) - top):
            listed = f"segment{'s' if len(kept) > 1 else ''} {', '.join(map(str, kept))}"
        else:  # named by the segments it leaves out (the next test)
            listed = "every segment but " + ", ".join(map(str, left_out))
        assert f"Keeps the score: {listed} ({len(kept)} of {total})" in text
    assert html.count("<svg class=curves") == 4  # 2 images x 2 targets
    assert text.count("no set keeps or removes it") == 2  # the corner objects


@pytest.mark.parametrize("segments, text, numbered", [
    ([4], "segment 4 (1 of 8)", [0, 1, 2, 3, 4, 5]),
    ([0, 1, 2, 3, 4, 5], "segments 0, 1, 2, 3, 4, 5 (6 of 8)", [0, 1, 2, 3, 4, 5]),  # over half, itself: 5 is new
    ([5, 1, 2, 7], "every segment but 0, 3, 4, 6 (4 of 8)", [0, 1, 2, 3, 4, 6, 5]),  # half: 6 instead of 5 and 7
    ([7, 6, 5, 4, 3, 2, 0], "every segment but 1 (7 of 8)", [0, 1, 2, 3, 4, 5]),
    (list(range(8)), "all 8 segments", [0, 1, 2, 3, 4, 5]),
])
def test_a_set_is_named_by_the_segments_it_leaves_out_when_they_put_fewer_numbers_on_the_heatmap(
        segments, text, numbered):
    # 63 of 64 segments keep a detector's score: the report listed 63 numbers and the heatmap drew 63,
    # most beside their segments with a line, a tangle around the box. The table's top 5 (here 0..4)
    # are numbered anyway: a set is named by what it leaves out only when that adds fewer numbers.
    from explain.render import named_segments
    from explain.report import _segment_list

    top = [0, 1, 2, 3, 4]
    assert _segment_list(segments, 8, top) == text
    values = np.array([0.8, 0.7, 0.6, 0.5, 0.4, 0.0, 0.0, 0.0])
    assert named_segments(values, {"keep": {"segments": segments}, "remove": {"segments": [5]}}) == numbered


def test_the_header_says_which_segmentation_was_used(tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(red_square_scene()).save(image)
    for method, words in (("merged", "segmentation merged: SLICO over-segmentation"),
                          ("slico", "segmentation slico: SLICO (slic_zero) with k-means seeds")):
        out = tmp_path / method
        run_explanations([image], red_square_detector, ExplainConfig(num_samples=16, num_segments=6,
                                                                     segmentation=method),
                         out, RunOptions(progress=False))
        text = page_text(out / "report.html")
        assert f"Kernel SHAP over superpixels (6 segments asked per image), {words}" in text
        assert "SLIC superpixels" not in text


def test_without_metrics_the_report_says_how_to_get_the_sets(tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(red_square_scene()).save(image)
    run_explanations([image], red_square_detector, ExplainConfig(num_samples=16, num_segments=6), tmp_path / "out",
                     RunOptions(progress=False))
    text = page_text(tmp_path / "out" / "report.html")
    assert text.count("need the metrics (--metrics, or metrics=True: 2 S + 2 more model calls per target") == 2


def test_failed_images_are_listed_with_their_error(odd_run, tmp_path):
    out, summary = odd_run
    failed = {**summary, "totals": {**summary["totals"],
                                    "failed": [{"image": "s3://bucket/a <b>.png", "error": "HTTP 500: model crashed"}],
                                    "unreadable": [{"image": "c.png", "key": "c.png", "error": "cannot read image"}]}}
    write_report(failed, tmp_path / "report.html", files_dir=out)
    text = page_text(tmp_path / "report.html")
    assert "2 image(s) could not be explained and were skipped:" in text
    assert "c.pngcannot read image" in text and "s3://bucket/a <b>.pngHTTP 500: model crashed" in text


def test_a_file_name_that_is_not_utf8_is_shown_escaped_and_the_run_writes_its_report(tmp_path):
    """A Latin-1 name (bytes b'caf\\xe9.png': Python names it with a surrogate, 'caf\\udce9.png') was explained,
    then writing report.html failed with UnicodeEncodeError and the run ended in a traceback."""
    images = tmp_path / "images"
    images.mkdir()
    name = os.fsdecode(b"caf\xe9.png")
    try:
        Image.fromarray(big_scene(0)).save(images / name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    (images / os.fsdecode(b"broken\xff.png")).write_bytes(b"not an image")
    config = ExplainConfig(num_samples=24, num_segments=6)
    summary = run_explanations([images], big_detector, config, tmp_path / "out", RunOptions(progress=False),
                               label_headers=["square", "corner"])
    assert [item["image"] for item in summary["images"]] == [str(images / name)]
    assert [item["stem"] for item in summary["images"]] == ["caf_.png-" + summary["images"][0]["stem"][-12:]]
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text(encoding="utf-8"))
    assert analysis["images"][0]["image"] == str(images / name)  # a program gets the name back as Python has it
    text = page_text(tmp_path / "out" / "report.html")
    assert f"{images}/caf\\udce9.png: 256x256 px" in text
    assert f"{images}/broken\\udcff.png" + f"cannot read image '{images}/broken\\udcff.png'" in text


def test_bidirectional_controls_in_names_are_shown_escaped_not_obeyed(tmp_path):
    """A right-to-left override (U+202E) in a file or class name reversed the rest of its line on the page:
    'x\\u202ebroken.png' read 'xgnp.nekorb'. Such controls (U+202A-U+202E, U+2066-U+2069) are shown as
    escapes; right-to-left letters stay as they are."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(big_scene(0)).save(images / "cat\u202egnp.god.png")
    (images / "x\u2066broken\u202e.png").write_bytes(b"not an image")
    (images / "two\nlines\x1b[2J.png").write_bytes(b"not an image")  # other controls: as the terminal shows them
    config = ExplainConfig(num_samples=24, num_segments=6)
    run_explanations([images], big_detector, config, tmp_path / "out", RunOptions(progress=False),
                     label_headers=["sq\u202aerau", "שלום"])
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert not set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069") & set(page)
    text = page_text(tmp_path / "out" / "report.html")
    assert f"{images}/cat\\u202egnp.god.png: 256x256 px" in text
    assert f"{images}/x\\u2066broken\\u202e.png" in text
    assert not set("\x1b") & set(page) and f"{images}/two\\nlines\\x1b[2J.png" in text  # a newline showed as a space
    assert "box 1: sq\\u202aerau 1.000" in text and "box 2: שלום 0.600" in text


# --------------------------------------------------------------------------------------
# in a real browser
# --------------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("width, mobile", [(1280, False), (390, True)])
def test_chromium_shows_the_portable_report_at_desktop_and_phone_width(odd_run, tmp_path, width, mobile):
    from tests.browser import HeadlessChromium, page_url

    out, summary = odd_run
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out / "report.html", alone / "report.html")  # no image file beside it
    with HeadlessChromium() as browser:
        result = browser.check_page(browser.open_page(page_url(alone / "report.html"), width, mobile=mobile))
    (tmp_path / f"report-{width}.png").write_bytes(result["screenshot"])

    assert result["errors"] == []
    assert len(result["images"]) == 6
    for image in result["images"]:
        assert image["complete"] and image["natural_width"] > 0, image["alt"]
        assert image["right"] <= width
    assert {url.split(":", 1)[0] for url in result["requests"]} <= {"file", "data"}
    assert [url for url in result["requests"] if url.startswith("file:")] == [page_url(alone / "report.html")]
    assert result["viewport_width"] == width
    assert result["scroll_width"] <= width and result["wider_than_viewport"] == []
    assert 'scène #1 ?50% "quoted" it\'s' in result["text"]
    with Image.open(io.BytesIO(result["screenshot"])) as screenshot:
        assert screenshot.size == (width, 900)
        pixels = np.asarray(screenshot.convert("L"), dtype=np.float64)
    assert pixels.std() > 20  # text and images, not a blank page


@pytest.mark.integration
def test_chromium_resolves_the_links_beside_the_report(odd_run):
    from tests.browser import HeadlessChromium, page_url

    out, _ = odd_run
    with HeadlessChromium() as browser:
        result = browser.check_page(browser.open_page(page_url(out / "report.html"), 1280))
    files = [link for link in result["links"] if not link["href"].startswith("#")]
    assert len(files) == 2 + 6  # two npz files, six JPEGs
    for link in files:
        resolved = Path(unquote(link["resolved"][len("file://"):]))
        assert resolved.is_file() and resolved.name == link["text"]


# names that would run a script or open a link if a page wrote them as markup
HOSTILE_FOLDER = "\"><img src=x onerror=\"window.pwned='folder'\">"
HOSTILE_FILES = ("<script>window.pwned='file'</script>.png", "javascript:window.pwned='link';.png",
                 "\"><svg onload=window.pwned='svg'>&amp;`tick`\u2028.png")
HOSTILE_LABELS = ("<script>window.pwned='label'</script>", "\"><img src=x onerror=window.pwned='label2'>")


@pytest.mark.integration
def test_chromium_runs_no_script_of_a_hostile_name_and_shows_it_as_text(tmp_path):
    """File, folder and class names, the endpoint and a failure's message are text on the page: no
    attacker script runs, nothing is fetched, and each reads as it was given."""
    from tests.browser import HeadlessChromium, page_url

    images = tmp_path / HOSTILE_FOLDER
    images.mkdir()
    for seed, name in enumerate(HOSTILE_FILES):  # the '/' of '</script>' makes a sub-folder
        (images / name).parent.mkdir(exist_ok=True)
        Image.fromarray(big_scene(seed)).save(images / name)
    (images / "<b>broken<").mkdir()
    (images / "<b>broken</b>.png").write_bytes(b"<script>window.pwned='bytes'</script>")

    def predict(batch):
        return big_detector(batch)

    predict.stats = {"endpoint": "http://x/<script>window.pwned='endpoint'</script>", "transport": "http",
                     "requests": 0, "retries": 0, "bytes_sent": 0}
    run_explanations([images], predict, ExplainConfig(num_samples=24, num_segments=6), tmp_path / "out",
                     RunOptions(progress=False), label_headers=HOSTILE_LABELS)
    with HeadlessChromium() as browser:
        session = browser.open_page(page_url(tmp_path / "out" / "report.html"), 1280)
        result = browser.check_page(session)
        probe = browser.send("Runtime.evaluate", {"expression": "[document.title, String(window.pwned)]",
                                                  "returnByValue": True}, session=session)
    assert probe["result"]["value"] == ["clearsight explanation report", "undefined"]
    assert result["errors"] == []
    assert [url for url in result["requests"] if not url.startswith("data:image/jpeg;base64,")] == [
        page_url(tmp_path / "out" / "report.html")]
    text = result["text"]
    for name in (f"{images}/{HOSTILE_FILES[0]}", f"{images}/{HOSTILE_FILES[1]}", *HOSTILE_LABELS,
                 f"{images}/<b>broken</b>.png", "http://x/<script>window.pwned='endpoint'</script> (http)"):
        assert name in text, name
    beside = page_url(tmp_path / "out") + "/"  # every link is a file beside the page, or a place on it
    assert all(link["resolved"].startswith(beside) for link in result["links"]), result["links"]
    assert any(link["text"].startswith("javascript:") for link in result["links"])


def test_too_few_model_calls_show_unknown_standard_errors(tmp_path):
    # 12 samples for about 6 segments: fewer than 2 S + 2 (so refinement gets none of them), and the
    # values are a minimum-norm fit whose sandwich errors of ~0 read as certainty; now unknown.
    image = tmp_path / "scene.png"
    Image.fromarray(red_square_scene()).save(image)
    out = tmp_path / "out"
    run_explanations([image], red_square_detector, ExplainConfig(num_samples=12, num_segments=6),
                     out, RunOptions(progress=False))
    summary = json.loads((out / "analysis.json").read_text())
    targets = summary["images"][0]["targets"]
    assert targets and all(target["max_standard_error"] is None for target in targets)
    assert all(segment["standard_error"] is None for target in targets for segment in target["top_segments"])
    with np.load(next(out.glob("*.npz"))) as arrays:
        assert np.isnan(arrays["standard_errors"]).all()
    assert "unknown" in page_text(out / "report.html")


@pytest.mark.parametrize("error, text", [
    (None, "unknown"), (0.0, "0.0000"), (0.0123, "0.0123"), (5e-5, "0.0001"),
    (2.33e-05, "2.3e-05"), (1e-9, "1.0e-09"),
])
def test_a_small_standard_error_is_not_shown_as_zero(error, text):
    from explain.report import _error_text

    assert _error_text(error) == text


def _shapes_detector_explanation():
    """The shipped shapes detector on a shipped scene, with the defaults (boxes focus, refinement to 64
    segments) and the metrics: 40-50 small segments lie in and around the square's box."""
    from explain.explainer import explain_image
    from explain.predictors import InProcessPredictor

    root = Path(__file__).resolve().parents[2]
    image = np.asarray(Image.open(root / "examples/shapes/samples/shapes_0.png").convert("RGB"))
    predictor = InProcessPredictor(root / "models/shapes-detector", "detection")
    config = ExplainConfig(task="detection", label_headers=("circle", "square", "triangle"), metrics=True)
    return explain_image(image, predictor, config), config


def test_the_written_figures_are_matplotlibs_tight_save_of_the_same_figures_drawn_once(tmp_path, monkeypatch):
    # The run writes each figure with one draw (it measures the crop without drawing and keeps the
    # layout the numbers were placed on); what it writes must be what savefig(bbox_inches="tight") gives,
    # up to the layout's second pass (savefig re-runs the constrained layout, which on some figures moves
    # the panels by 2-3 px: a 5 x 7 image, six targets of a 160 x 200 one; on these, within 1 px: each
    # pixel is compared with the closest of its 3 x 3 neighbourhood in the other, as a panel moved by one
    # pixel row made a mean difference of 3.3 levels over an identical figure).
    from matplotlib.figure import Figure

    from explain.explainer import explain_image
    from explain.render import plot_explanation, render_explanation, save_jpeg

    config = ExplainConfig(num_samples=80, num_segments=12, metrics=True, label_headers=("square", "corner"))
    explanation = explain_image(big_scene(0), big_detector, config)
    assert explanation.num_targets == 2
    for targets in ([0], [1], None, []):  # a figure per target as the run writes them, all of them, none
        mine, theirs = io.BytesIO(), io.BytesIO()
        save_jpeg(plot_explanation(explanation, targets), mine)
        plot_explanation(explanation, targets).savefig(theirs, format="jpeg", dpi=100, bbox_inches="tight",
                                                       pil_kwargs={"quality": 90})
        mine, theirs = (np.asarray(Image.open(buffer)).astype(np.float64) for buffer in (mine, theirs))
        assert abs(mine.shape[0] - theirs.shape[0]) <= 1 and abs(mine.shape[1] - theirs.shape[1]) <= 1, targets
        height, width = min(mine.shape[0], theirs.shape[0]), min(mine.shape[1], theirs.shape[1])
        mine, theirs = mine[:height, :width], theirs[:height, :width]
        nearest = np.min([np.abs(mine[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx] - theirs[1:-1, 1:-1]).max(axis=2)
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        assert nearest.mean() < 3.0 and np.mean(nearest > 40) < 0.005, (targets, nearest.mean())

    draws = []
    original_draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda figure, renderer: (draws.append(figure), original_draw(figure, renderer)))
    written = render_explanation(explanation, "scene.png", tmp_path)
    assert len(written) == 3 and len(draws) == 3 and len(set(map(id, draws))) == 3  # 2 targets, the objects


def test_a_tall_images_numbers_are_sized_at_the_scale_its_heatmap_is_drawn_at():
    # The numbers' sizes in image pixels come from the heatmap's scale when they are placed; an image
    # panel's aspect shrinks it at the first draw, so a scale read before that made numbers that overlap.
    from explain.explainer import explain_image
    from explain.render import plot_explanation, save_jpeg

    tall = np.ascontiguousarray(np.kron(red_square_scene(0), np.ones((3, 1, 1), dtype=np.uint8)))  # 192 x 64
    classifier, _ = additive_classifier(np.ones(tall.shape))
    explanation = explain_image(tall, classifier, ExplainConfig(task="classification", num_samples=60,
                                                                  num_segments=8))
    figure = plot_explanation(explanation)
    heatmap = figure.axes[1]
    assert heatmap.get_title().startswith("SHAP values") and heatmap.texts  # numbered

    def scale():  # display pixels per image pixel, x and y
        return np.abs(np.diff(heatmap.transData.transform([[0.0, 0.0], [1.0, 1.0]]), axis=0))[0]

    placed_at = scale()
    save_jpeg(figure, io.BytesIO())
    np.testing.assert_allclose(scale(), placed_at)


def _boxes_overlap(first, second) -> bool:
    return first.x0 < second.x1 and second.x0 < first.x1 and first.y0 < second.y1 and second.y0 < first.y1


def test_a_heatmap_numbers_the_segments_the_report_names_and_no_two_numbers_meet(tmp_path):
    # Every one of 64 segments was numbered: 40-50 numbers in and around a small box drew one black blob,
    # so the table's segments could not be found, and the blob hid the only blue of the map.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from explain.render import plot_explanation, save_jpeg
    from explain.report import build_image_summary

    explanation, config = _shapes_detector_explanation()
    assert explanation.num_targets >= 1 and explanation.num_segments_used == 64
    summary = build_image_summary(Path("shapes_0.png"), "shapes_0.png", explanation, [], config)
    segments = explanation.segments
    beside = 0
    for index, target in enumerate(summary["targets"]):
        top = {item["segment"] for item in target["top_segments"]}
        named = set(top)
        for key in ("keeps_score", "removes_score"):
            chosen = set((target.get(key) or {}).get("segments", []))  # or what it leaves out, if fewer to number
            left_out = set(range(64)) - chosen
            named |= left_out if len(left_out - top) < len(chosen - top) else chosen
        figure = plot_explanation(explanation, [index])
        save_jpeg(figure, io.BytesIO())  # what the run writes
        canvas = FigureCanvasAgg(figure)  # and drawn again, to measure what was drawn
        canvas.draw()
        renderer = canvas.get_renderer()
        heatmap = figure.axes[1]  # the image with the box, the heatmap, (the sets), the colour bar
        assert heatmap.get_title().startswith("SHAP values")
        texts = [text for text in heatmap.texts if text.get_text().isdecimal()]
        drawn = {int(text.get_text()) for text in texts}
        assert drawn == named, (drawn, named)  # every number the report names, and no other
        extents = [text.get_window_extent(renderer) for text in texts]
        for first in range(len(extents)):
            for second in range(first + 1, len(extents)):
                assert not _boxes_overlap(extents[first], extents[second]), (
                    texts[first].get_text(), texts[second].get_text())
        lines = {line.get_gid(): line for line in heatmap.lines}
        for text in texts:
            x, y = text.get_position()
            number = int(text.get_text())
            if segments[int(y), int(x)] == number:
                continue  # inside its segment
            beside += 1
            line = lines[f"segment-{number}-line"]  # beside it: a line leads to the segment
            end_x, end_y = line.get_xdata()[-1], line.get_ydata()[-1]
            assert segments[int(end_y), int(end_x)] == number
    assert beside > 0  # the box's small segments keep their colour: their numbers sit beside them


# --------------------------------------------------------------------------------------
# what the standard errors cover: a noise baseline is drawn from the seed
# --------------------------------------------------------------------------------------

def _base_value_and_text(tmp_path, baseline: str, seed: int) -> tuple[float, str, dict]:
    image = tmp_path / "scene.png"
    if not image.exists():
        Image.fromarray(red_square_scene()).save(image)
    out = tmp_path / f"{Path(baseline).name}-{seed}"
    classifier, _ = additive_classifier(pixel_weights())  # its base value is the baseline's score
    summary = run_explanations([image], classifier,
                               ExplainConfig(task="classification", num_samples=40, num_segments=6,
                                             baseline=baseline, seed=seed),
                               out, RunOptions(progress=False))
    return (summary["images"][0]["targets"][0]["base_value"], page_text(out / "report.html"),
            json.loads((out / "analysis.json").read_text()))


def test_the_report_says_a_noise_baseline_is_drawn_from_the_seed_and_the_errors_leave_it_out(tmp_path):
    # Another seed draws other noise: another game, so values move by more than the stated errors.
    first, text, analysis = _base_value_and_text(tmp_path, "noise", 1)
    second, _, _ = _base_value_and_text(tmp_path, "noise", 2)
    assert first != second
    assert ("The standard errors and true values are for this run's baseline image: random noise drawn from "
            "seed 1. Another --seed draws other noise, and the values and base values change, often by more "
            "than these standard errors; a fixed baseline (an image file, or black, mean or blur) gives the "
            "same game in every run.") in text
    assert analysis["settings"]["baseline"] == "noise" and analysis["settings"]["seed"] == 1
    assert analysis["estimator"]["baseline"].startswith("uniform white noise drawn from seed 1: another seed")
    assert "leave out the randomness of a noise baseline" in analysis["estimator"]["standard_errors"]


def test_a_fixed_baseline_gives_the_same_game_whatever_the_seed(tmp_path):
    baseline_file = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(baseline_file)
    for baseline in ("black", str(baseline_file)):
        first, text, analysis = _base_value_and_text(tmp_path, baseline, 1)
        second, _, _ = _base_value_and_text(tmp_path, baseline, 2)
        assert first == second
        assert f"The standard errors and true values are for this run's baseline image ({baseline}), the same " \
               "in every run." in text
        assert "drawn from seed" not in text
        assert analysis["estimator"]["baseline"].endswith("(the same image in every run: a fixed game)")


# --------------------------------------------------------------------------------------
# which model, when, by which version; what the columns mean; an image without a target
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def endpoint_run(tmp_path_factory):
    """A CLI run against the in-test HTTP endpoint: (out, endpoint URL, start and end of the run in UTC)."""
    from datetime import datetime, timezone

    from click.testing import CliRunner

    from explain.cli import main
    from tests.fake_endpoint import FakeEndpoint

    root = tmp_path_factory.mktemp("provenance")
    Image.fromarray(big_scene(0)).save(root / "scene.png")
    started = datetime.now(timezone.utc).replace(microsecond=0)  # noqa: UP017 - as the code under test
    with FakeEndpoint("detection") as endpoint:
        result = CliRunner().invoke(main, ["--endpoint", endpoint.url, "--task", "detection", "--out",
                                           str(root / "out"), "--num-samples", "16", "--num-segments", "4",
                                           "--quiet", str(root / "scene.png")])
        url = endpoint.url
    assert result.exit_code == 0, result.output
    return root / "out", url, started, datetime.now(timezone.utc)  # noqa: UP017


def test_analysis_json_and_the_report_header_name_the_model_the_time_and_the_version(endpoint_run):
    from datetime import datetime

    from serving import __version__

    out, url, started, ended = endpoint_run
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["endpoint"] == f"{url}/invocations" == analysis["predictor"]["endpoint"]
    assert analysis["images"][0]["endpoint"] == f"{url}/invocations"
    assert analysis["tool_version"] == __version__
    created = datetime.strptime(analysis["created_utc"], "%Y-%m-%dT%H:%M:%S%z")
    assert started <= created <= ended
    assert (analysis["version"], analysis["tool"]) == (1, "clearsight.explain")  # the documented keys stay
    text = page_text(out / "report.html")
    assert f"Model (endpoint){url}/invocations (http)" in text
    assert f"Report written{analysis['created_utc'][:10]} {analysis['created_utc'][11:19]} UTC" in text
    assert f"Toolclearsight {__version__}" in text


def test_a_merge_of_earlier_results_still_names_the_model(endpoint_run, tmp_path):
    from explain import merge_outputs

    out, url, _, _ = endpoint_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    summary = merge_outputs(copy)  # no predictor: the endpoint comes from the images' own summaries
    assert summary["endpoint"] == f"{url}/invocations"
    assert f"Model (endpoint){url}/invocations" in page_text(copy / "report.html")


def test_the_columns_are_defined_once_in_a_legend(odd_run):
    out, _ = odd_run
    text = page_text(out / "report.html")
    assert text.count("What the table columns mean") == 1
    for definition in ("scorehow sure the model is of this object or class on the whole image (0 to 1)",
                       "base valuethe score with every segment hidden (replaced by the baseline)",
                       "predictionthe score the explanation accounts for",
                       "boxwhere the object is: left, top, right, bottom edges as fractions of the image's width"):
        assert definition in text


def test_an_image_without_a_target_says_the_threshold_and_the_best_score_below_it(tmp_path):
    scene = tmp_path / "no-square.png"
    Image.fromarray(textured_image(0)).save(scene)  # no red square: only the corner object, 0.6
    config = ExplainConfig(num_samples=16, num_segments=4, probability_threshold=0.8)
    summary = run_explanations([scene], red_square_detector, config, tmp_path / "out", RunOptions(progress=False),
                               label_headers=["square", "corner"])
    image = summary["images"][0]
    assert image["targets"] == []
    assert image["best_detection"]["label"] == "corner" and image["best_detection"]["score"] == pytest.approx(0.6)
    text = page_text(tmp_path / "out" / "report.html")
    assert "No target: nothing scored at or above the probability threshold 0.8; the best was corner 0.600." in text


def test_an_image_the_model_saw_nothing_in_says_so(tmp_path):
    scene = tmp_path / "empty.png"
    Image.fromarray(textured_image(0)).save(scene)
    run_explanations([scene], lambda batch: [np.zeros((0, 6), dtype=np.float32) for _ in batch],
                     ExplainConfig(num_samples=16, num_segments=4), tmp_path / "out", RunOptions(progress=False))
    text = page_text(tmp_path / "out" / "report.html")
    assert "No target: nothing scored at or above the probability threshold 0.5; the model detected nothing at all." in text


@pytest.mark.integration
@pytest.mark.parametrize("media", ["screen", "print"])
def test_chromium_shows_the_model_time_version_settings_and_legend(endpoint_run, media):
    from serving import __version__
    from tests.browser import HeadlessChromium, page_url

    out, url, _, _ = endpoint_run
    analysis = json.loads((out / "analysis.json").read_text())
    with HeadlessChromium() as browser:
        session = browser.open_page(page_url(out / "report.html"), 1280)
        browser.send("Emulation.setEmulatedMedia", {"media": media}, session=session)
        result = browser.check_page(session)
    text = result["text"]
    header = text[:text.index("Settings")]  # above the settings and the images
    assert f"Model (endpoint)\t{url}/invocations (http)" in header
    assert f"Report written\t{analysis['created_utc'][:10]} {analysis['created_utc'][11:19]} UTC" in header
    assert f"Tool\tclearsight {__version__}" in header
    # the Settings table and the legend are shown (open), on screen and in print
    assert "num_samples\t16" in text
    assert "base value\nthe score with every segment hidden" in text
