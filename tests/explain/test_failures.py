"""Long runs survive bad images: each failure is recorded with its reason, the run goes on, the exit
status says so, a resumed run skips what would fail again; the decoder refuses what it must not decode."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from explain import ExplainConfig, ExplainError, PredictorError, RunOptions, run_explanations
from explain.cli import main
from explain.images import decode_image
from explain.manifest import read_manifests
from explain.sources import collect_sources
from tests.explain.test_explainer import red_square_detector, red_square_scene

CONFIG = ExplainConfig(num_samples=24, num_segments=6)
ROOT = Path(__file__).resolve().parents[2]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = png_bytes(red_square_scene(seed=3))


@pytest.mark.parametrize("data, reason", [
    (png_claiming(15000, 15000), "15000x15000 is 225,000,000 pixels, more than the 40,000,000 explain decodes; "
                                 "downscale it first"),
    (png_claiming(40001, 1000), "40001x1000 is 40,001,000 pixels, more than the 40,000,000 explain decodes; "
                                "downscale it first"),
    (GOOD[: len(GOOD) // 2], "image file is truncated"),
    (b"GIF89a" + b"\0" * 32, "not a JPEG or PNG file (explain reads JPEG and PNG)"),
    (b"just some text", "not a JPEG or PNG file (explain reads JPEG and PNG)"),
    (b"", "empty (explain reads JPEG and PNG)"),
])
def test_the_decoder_refuses_with_the_reason(data, reason):
    with pytest.raises(ExplainError) as refused:
        decode_image(data, "photos/x.png")
    assert str(refused.value).startswith("cannot read image 'photos/x.png': ")
    assert reason in str(refused.value)


def test_a_truncated_image_is_refused_even_where_pillow_was_told_to_tolerate_them(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as importing gluoncv.data does
    with pytest.raises(ExplainError, match="image file is truncated"):
        decode_image(GOOD[: len(GOOD) // 2], "x.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_the_pixel_cap_is_checked_before_decoding():
    """Exactly at the cap the image decodes; one pixel-row more is refused from the header alone."""
    image = np.zeros((20, 25, 3), dtype=np.uint8)
    assert decode_image(png_bytes(image), "x.png", max_pixels=500).shape == (20, 25, 3)
    with pytest.raises(ExplainError, match="25x21 is 525 pixels, more than the 500 explain decodes"):
        decode_image(png_bytes(np.zeros((21, 25, 3), dtype=np.uint8)), "x.png", max_pixels=500)


def bad_folder(tmp_path: Path) -> Path:
    """Five good 64x64 scenes and one image of each failure kind the decoder and the model meet."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(5):
        (folder / f"good{index}.png").write_bytes(png_bytes(red_square_scene(seed=index)))
    (folder / "bomb.png").write_bytes(png_claiming(15000, 15000))
    (folder / "truncated.png").write_bytes(GOOD[: len(GOOD) // 2])
    (folder / "text.jpg").write_bytes(b"this is not a JPEG")
    (folder / "wide.png").write_bytes(png_bytes(np.full((2, 3000, 3), 128, dtype=np.uint8)))
    return folder


def run(images, out, predict=red_square_detector, **options):
    options.setdefault("progress", False)
    return run_explanations(images, predict, CONFIG, out, RunOptions(**options))


class Counting:
    """red_square_detector counting the images sent, refusing images wider than 64 pixels as an endpoint would."""

    def __init__(self):
        self.images = 0

    def __call__(self, batch):
        if batch.shape[2] > 64:
            raise PredictorError("endpoint rejected the request with HTTP 400: image too elongated")
        self.images += len(batch)
        return red_square_detector(batch)


def test_failed_images_are_recorded_and_the_run_goes_on(tmp_path):
    folder = bad_folder(tmp_path)
    sources = collect_sources([str(folder)])
    (folder / "good4.png").unlink()  # gone between the listing and the read
    summary = run(sources, tmp_path / "out", Counting())

    assert summary["totals"]["images"] == 4
    assert [item["stem"] for item in summary["images"]] == ["good0.png", "good1.png", "good2.png", "good3.png"]
    failed = {item["key"]: (item["kind"], item["reason"]) for item in summary["totals"]["failed"]}
    assert failed == {
        "bomb.png": ("image", f"cannot read image '{folder / 'bomb.png'}': 15000x15000 is 225,000,000 pixels, "
                              "more than the 40,000,000 explain decodes; downscale it first"),
        "good4.png": ("read", f"cannot read image '{folder / 'good4.png'}': No such file or directory"),
        "text.jpg": ("image", f"cannot read image '{folder / 'text.jpg'}': not a JPEG or PNG file (explain "
                              "reads JPEG and PNG)"),
        "truncated.png": ("image", f"cannot read image '{folder / 'truncated.png'}': image file is truncated"),
        "wide.png": ("model", "endpoint rejected the request with HTTP 400: image too elongated"),
    }
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["totals"]["failed"] == summary["totals"]["failed"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "5 image(s) could not be explained and were skipped" in report and "15000x15000" in report
    recorded = {entry["key"]: entry for entry in read_manifests(tmp_path / "out")}
    assert recorded["bomb.png"]["status"] == "failed" and recorded["good0.png"]["status"] == "explained"
    assert recorded["bomb.png"]["fingerprint"].startswith("sha256:") and "fingerprint" not in recorded["good4.png"]


def test_a_resumed_run_skips_what_would_fail_again_unless_asked(tmp_path):
    folder = bad_folder(tmp_path)
    out = tmp_path / "out"
    sources = collect_sources([str(folder)])
    (folder / "good4.png").chmod(0)  # no permission (as root, who may read it anyway: gone)
    if os.geteuid() == 0:
        (folder / "good4.png").unlink()
    first = run(sources, out, Counting())
    kinds = {item["key"]: item["kind"] for item in first["totals"]["failed"]}
    assert kinds == {"bomb.png": "image", "good4.png": "read", "text.jpg": "image", "truncated.png": "image",
                     "wide.png": "model"}
    lines = len(read_manifests(out))

    # again: the unreadable file and the endpoint's rejection are tried again, the bad bytes are not
    (folder / "good4.png").write_bytes(png_bytes(red_square_scene(seed=4)))
    (folder / "good4.png").chmod(0o644)
    second = run(collect_sources([str(folder)]), out, Counting())
    assert second["totals"]["explained_now"] == 1 and second["totals"]["images"] == 5
    entries = read_manifests(out)
    assert sorted(entry["key"] for entry in entries[lines:]) == ["good4.png", "wide.png"]
    earlier = {item["key"] for item in second["totals"]["failed"] if item.get("earlier")}
    assert earlier == {"bomb.png", "text.jpg", "truncated.png"}

    # changed bytes are tried again by themselves; --retry-failed tries the unchanged ones too
    (folder / "truncated.png").write_bytes(GOOD)
    third = run(collect_sources([str(folder)]), out, Counting())
    assert third["totals"]["explained_now"] == 1 and "truncated.png" not in {
        item["key"] for item in third["totals"]["failed"]}
    lines = len(read_manifests(out))
    fourth = run(collect_sources([str(folder)]), out, Counting(), retry_failed=True)
    assert sorted(entry["key"] for entry in read_manifests(out)[lines:]) == ["bomb.png", "text.jpg", "wide.png"]
    assert not any(item.get("earlier") for item in fourth["totals"]["failed"])


def cli(args):
    return CliRunner().invoke(main, [str(arg) for arg in args], prog_name="python -m explain")


def test_exit_status_says_when_images_failed(tmp_path, tiny_detector_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(GOOD)
    (folder / "bomb.png").write_bytes(png_claiming(15000, 15000))
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--num-samples", "16", "--num-segments", "4",
            "--quiet", "--out", tmp_path / "out", folder]
    failed = cli(args)
    assert failed.exit_code == 1, failed.output
    assert failed.stdout.splitlines()[1:3] == [
        "1 image(s) failed:",
        f"  {folder / 'bomb.png'}: image: cannot read image '{folder / 'bomb.png'}': 15000x15000 is "
        "225,000,000 pixels, more than the 40,000,000 explain decodes; downscale it first"]
    assert failed.stderr.strip() == (
        "Error: 1 image(s) failed (listed above and in analysis.json); the others were explained. "
        "Add --allow-partial to exit 0 on such runs")
    accepted = cli(args + ["--allow-partial"])
    assert accepted.exit_code == 0, accepted.output
    assert ("1 image(s) failed (1 in an earlier run, not tried again: --retry-failed tries them):"
            in accepted.stdout)


def drop_file_permission_override():
    """In a child process running as root: lose CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (file modes then apply)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_run_with_corrupt_images_explains_every_good_one(tmp_path, detector_endpoint):
    """20 good images and 5 bad ones (truncated, PNG bomb, 3000x2, wrong extension, no read permission),
    explained by `python -m explain` against the real local endpoint: every good image is explained,
    every bad one is listed with its reason, the exit status is 1 (0 with --allow-partial)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(20):
        (folder / f"good{index:02d}.png").write_bytes(png_bytes(red_square_scene(seed=index)))
    (folder / "truncated.png").write_bytes(GOOD[: len(GOOD) // 2])
    (folder / "bomb.png").write_bytes(png_claiming(15000, 15000))
    (folder / "wide.png").write_bytes(png_bytes(np.full((2, 3000, 3), 128, dtype=np.uint8)))
    (folder / "notes.jpg").write_bytes(b"meeting notes, not a photo")
    (folder / "secret.png").write_bytes(GOOD)
    (folder / "secret.png").chmod(0)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    command = [sys.executable, "-m", "explain", "--endpoint", detector_endpoint.url, "--task", "detection",
               "--num-samples", "16", "--num-segments", "4", "--quiet", "--out", str(out), str(folder)]
    preexec = drop_file_permission_override if os.geteuid() == 0 else None
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=600, preexec_fn=preexec)
    assert result.returncode == 1, result.stderr
    assert "Error: 5 image(s) failed (listed above and in analysis.json)" in result.stderr
    assert "Traceback" not in result.stderr
    analysis = json.loads((out / "analysis.json").read_text())
    assert sorted(item["stem"] for item in analysis["images"]) == [f"good{index:02d}.png" for index in range(20)]
    failed = {item["key"]: item for item in analysis["totals"]["failed"]}
    assert {key: item["kind"] for key, item in failed.items()} == {
        "truncated.png": "image", "bomb.png": "image", "wide.png": "model", "notes.jpg": "image",
        "secret.png": "read"}
    assert "Permission denied" in failed["secret.png"]["reason"]
    assert "HTTP 400" in failed["wide.png"]["reason"]
    for key in failed:
        assert f"  {failed[key]['image']}: {failed[key]['kind']}: " in result.stdout
    partial = subprocess.run(command + ["--allow-partial"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=600, preexec_fn=preexec)
    assert partial.returncode == 0, partial.stderr
    assert partial.stdout.startswith("20 image(s), ") and "all explained by earlier runs" in partial.stdout


def test_an_image_that_fails_when_explained_again_keeps_its_earlier_files_marked_as_not_this_runs(tmp_path, caplog):
    """Its bytes changed, so it is explained again, and now it fails: the files of its earlier explanation stay,
    untouched, and the summary, analysis.json, the report and the log say that they are from an earlier run."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        (folder / f"good{index}.png").write_bytes(png_bytes(red_square_scene(seed=index)))
    out = tmp_path / "out"
    run(collect_sources([str(folder)]), out)
    earlier = {entry["key"]: entry["files"] for entry in read_manifests(out)}["good1.png"]
    kept = ["good1.png_objects.jpeg", "good1.png_shap.npz", "shap_good1.png_box1_object.jpeg",
            "shap_good1.png_box2_object.jpeg"]
    assert sorted(earlier) == kept
    contents = {name: (out / name).read_bytes() for name in earlier}

    (folder / "good1.png").write_bytes(GOOD[: len(GOOD) // 2])
    with caplog.at_level("WARNING", logger="explain.runner"):
        second = run(collect_sources([str(folder)]), out)
    location = str(folder / "good1.png")
    assert second["totals"]["failed"] == [{
        "image": location, "key": "good1.png", "kind": "image",
        "reason": f"cannot read image '{location}': image file is truncated",
        "files_from_earlier_run": kept}]
    assert [item["stem"] for item in second["images"]] == ["good0.png"]
    assert {name: (out / name).read_bytes() for name in earlier} == contents  # kept as they were
    assert json.loads((out / "analysis.json").read_text())["totals"]["failed"] == second["totals"]["failed"]
    report = (out / "report.html").read_text()
    assert "<th>files from an earlier run</th>" in report and f"<td class=text>{', '.join(kept)}</td>" in report
    assert ("1 of them were explained by an earlier run: the files of that explanation are still in the output "
            "folder under the image's stem (listed above). They are not this run's results and this "
            "report does not show them.") in report
    assert "shap_good1.png_box1_object.jpeg\"" not in report  # neither embedded nor linked
    assert (f"{location}: the 4 file(s) under its stem good1.png in {out} ({', '.join(kept)}) are from an earlier "
            "run, not from this one, which could not explain it") in [record.getMessage() for record in caplog.records]

    # a resumed run does not try the same bytes again, and still says whose the files are
    third = run(collect_sources([str(folder)]), out)
    assert third["totals"]["failed"] == [{**second["totals"]["failed"][0], "earlier": True}]

    # the only image of a run: no report is written, and the error says what is left in --out
    with pytest.raises(ExplainError) as refused:
        run(collect_sources([str(folder / "good1.png")]), out, retry_failed=True)
    assert str(refused.value) == (
        f"no image could be explained: 1 failed: cannot read image '{location}': image file is truncated; {out} "
        "still holds 4 file(s) of earlier explanations of 1 of them (good1.png_objects.jpeg, good1.png_shap.npz, "
        "shap_good1.png_box1_object.jpeg, ...): they are not this run's")


def test_the_summary_on_stdout_names_files_left_by_an_earlier_run(tmp_path, tiny_detector_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(GOOD)
    (folder / "other.png").write_bytes(png_bytes(red_square_scene(seed=5)))
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--num-samples", "16", "--num-segments", "4",
            "--quiet", "--out", tmp_path / "out", folder]
    assert cli(args).exit_code == 0
    earlier = sorted({entry["key"]: entry["files"] for entry in read_manifests(tmp_path / "out")}["good.png"])
    (folder / "good.png").write_bytes(b"no longer an image")
    failed = cli(args)
    assert failed.exit_code == 1, failed.output
    assert failed.stdout.splitlines()[1:5] == [
        "1 image(s) were finished by an earlier run and skipped",
        "1 image(s) failed:",
        f"  {folder / 'good.png'}: image: cannot read image '{folder / 'good.png'}': not a JPEG or PNG file "
        "(explain reads JPEG and PNG)",
        f"    files from an earlier run, not this one: {', '.join(earlier)}"]


def test_a_run_where_every_image_fails_the_same_way_names_the_reason_once_with_its_count(tmp_path):
    for index in range(6):
        Image.fromarray(np.full((40, 48, 3), 30 * index, dtype=np.uint8)).save(tmp_path / f"scene{index}.png")
    (tmp_path / "odd.png").write_bytes(b"not a png")

    def refusing_model(batch):
        raise PredictorError("HTTP 400: the model refuses every image")

    with pytest.raises(ExplainError) as raised:
        run_explanations([tmp_path], refusing_model, ExplainConfig(num_samples=16, num_segments=4),
                         tmp_path / "out", RunOptions(progress=False))
    message = str(raised.value)
    assert message.startswith("no image could be explained: 7 failed: 6 images: HTTP 400: the model refuses every "
                              "image; 1 image: ")
    assert message.count("the model refuses every image") == 1


# --------------------------------------------------------------------------------------
# answers the explainer cannot explain faithfully (review 17, findings 6 and 10)
# --------------------------------------------------------------------------------------

def _detector_answering(rows):
    def detector(batch):
        return [np.array(rows, dtype=np.float32) for _ in batch]
    return detector


@pytest.mark.parametrize("box, message", [
    ([0.6, 0.6, 0.2, 0.2], "has the box [0.6, 0.6, 0.2, 0.2], which has no area (x1/w <= x0/w): boxes must be "
                           "[x0/w, y0/h, x1/w, y1/h] with x0 < x1 and y0 < y1"),
    ([0.2, 0.6, 0.4, 0.2], "which has no area (y1/h <= y0/h)"),
    ([0.3, 0.3, 0.3, 0.5], "which has no area (x1/w <= x0/w)"),
    # review 19: pixel coordinates, or a box wholly off the image, were explained silently
    ([24, 20, 48, 44], "has the box [24, 20, 48, 44], which lies outside the image: boxes must be "
                       "[x0/w, y0/h, x1/w, y1/h], fractions of the image's width and height (0..1); an endpoint "
                       "that answers pixel coordinates needs dividing by the width and height"),
    ([-0.5, 0.2, -0.1, 0.4], "which lies outside the image"),
    ([0.2, 1.0, 0.4, 1.3], "which lies outside the image"),
    # review 20: pixel coordinates of a box at the top left overlap the image's 0..1 square
    ([0, 0, 30, 40], "has the box [0, 0, 30, 40], which reaches more than an image's size past its border: boxes "
                     "must be [x0/w, y0/h, x1/w, y1/h], fractions of the image's width and height (0..1)"),
    ([-1.5, 0.2, 0.4, 0.6], "which reaches more than an image's size past its border"),
])
def test_a_target_box_without_area_is_refused_not_explained_as_zeros(box, message):
    from explain.explainer import explain_image

    with pytest.raises(PredictorError, match=re.escape(message)):
        explain_image(red_square_scene(), _detector_answering([[1, 0.9, *box]]), CONFIG)


@pytest.mark.parametrize("rows, message", [
    # a score first (the class id read as 0.9) or a fractional or negative id was taken as a class
    ([[0.9, 1, 0.2, 0.2, 0.6, 0.6]], "a detection of class id 0.9 for image 0: class ids are whole numbers from 0"),
    ([[1.5, 0.9, 0.2, 0.2, 0.6, 0.6]], "a detection of class id 1.5 for image 0"),
    ([[-2, 0.9, 0.2, 0.2, 0.6, 0.6]], "a detection of class id -2 for image 0"),
])
def test_a_class_id_that_is_not_a_whole_number_is_refused(rows, message):
    from explain.explainer import explain_image

    with pytest.raises(PredictorError, match=re.escape(message)):
        explain_image(red_square_scene(), _detector_answering(rows), CONFIG)


@pytest.mark.parametrize("rows, message", [
    # review 26: a class id of 1e300 (float32 infinity on the wire) was "NaN or infinite scores or boxes"
    ([[np.inf, 0.9, 0.2, 0.2, 0.6, 0.6]], "non-finite detections for image 0 of a request (a masked image): NaN or "
                                           "infinite class id (the answer's values are float32: beyond ±3.4e38 is "
                                           "infinite)"),
    ([[1, np.nan, 0.2, 0.2, 0.6, 0.6], [1, 0.9, 0.2, np.inf, 0.6, 0.6]], "NaN or infinite score, y0/h (the answer"),
])
def test_non_finite_detections_name_their_columns(rows, message):
    from explain.detection import check_detections

    with pytest.raises(PredictorError, match=re.escape(message)):
        check_detections(np.array(rows))


def test_gluoncv_padding_rows_of_class_minus_one_are_accepted():
    from explain.explainer import explain_image

    rows = [[1, 0.9, 0.2, 0.2, 0.6, 0.6], [-1, -1, -1, -1, -1, -1]]
    explanation = explain_image(red_square_scene(), _detector_answering(rows), CONFIG)
    assert explanation.labels == (1,)


def test_a_target_box_that_reaches_past_a_border_is_explained():
    from explain.explainer import explain_image

    explanation = explain_image(red_square_scene(), _detector_answering([[1, 0.9, -0.05, 0.8, 0.3, 1.02]]), CONFIG)
    np.testing.assert_allclose(explanation.boxes, [[-0.05, 0.8, 0.3, 1.02]], rtol=1e-6)


def test_a_target_that_scores_otherwise_on_its_own_image_is_named_in_the_warnings():
    # a model that answers the same image differently from call to call (0.9 the first time,
    # 0.5 after): the values explain 0.5, the target was chosen at 0.9
    from explain.explainer import explain_image
    from explain.image_warnings import collect_image_warnings

    calls = []

    def drifting(batch):
        calls.append(len(batch))
        score = 0.9 if len(calls) == 1 else 0.5
        return [np.array([[0, score, 0.2, 0.2, 0.6, 0.6]], dtype=np.float32) for _ in batch]

    with collect_image_warnings("scene.png") as warnings:
        explanation = explain_image(red_square_scene(), drifting, CONFIG)
    assert explanation.target_scores[0] == pytest.approx(0.9)
    assert explanation.predictions[0] == pytest.approx(0.5)
    assert any("target 0 (0, score 0.900) scores 0.500 on the same image" in warning for warning in warnings)
    with collect_image_warnings("scene.png") as warnings:  # a deterministic model: no warning
        explain_image(red_square_scene(), red_square_detector, CONFIG)
    assert not any("on the same image" in warning for warning in warnings)


def test_a_classifier_whose_class_count_changes_mid_run_is_stopped():
    from explain.explainer import explain_image

    calls = []

    def swapped(batch):
        calls.append(len(batch))
        classes = 3 if len(calls) == 1 else 4
        return [np.full(classes, 1.0 / classes, dtype=np.float32) for _ in batch]

    with pytest.raises(PredictorError, match="answered 4 class scores for a masked image but 3 for the image "
                                             "itself; was the model changed during the run"):
        explain_image(red_square_scene(), swapped, ExplainConfig(task="classification", num_samples=24,
                                                                  num_segments=6))


def test_a_target_overlapped_by_a_stronger_detection_of_its_class_is_named_in_the_warnings():
    # two detections of one class at IoU 0.82 (a model without that NMS): the weaker target is
    # matched by the stronger one, so its values explain 0.9, not its own 0.7
    from explain.explainer import explain_image
    from explain.image_warnings import collect_image_warnings

    rows = [[0, 0.9, 0.2, 0.2, 0.6, 0.6], [0, 0.7, 0.22, 0.22, 0.62, 0.62]]
    with collect_image_warnings("scene.png") as warnings:
        explanation = explain_image(red_square_scene(), _detector_answering(rows), CONFIG)
    assert list(explanation.predictions) == pytest.approx([0.9, 0.9])
    assert [warning.split(")")[0] for warning in warnings if "on the same image" in warning] == [
        "target 1 (0, score 0.700"]
    assert "another detection of its class overlaps its box" in warnings[-1]


def test_an_image_file_too_large_to_be_one_is_refused_before_it_is_read(tmp_path):
    # a file of gigabytes named .jpg was read whole into memory before its header said it was no image
    from explain.sources import MAX_IMAGE_FILE_BYTES

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes(GOOD)
    with open(folder / "huge.jpg", "wb") as sparse:  # takes no disk space
        sparse.truncate(MAX_IMAGE_FILE_BYTES + 1)
    summary = run(collect_sources([str(folder)]), tmp_path / "out")
    assert [item["stem"] for item in summary["images"]] == ["good.png"]
    assert [(item["key"], item["kind"], item["reason"]) for item in summary["totals"]["failed"]] == [
        ("huge.jpg", "image", f"cannot read image '{folder / 'huge.jpg'}': a file of 268,435,457 bytes, more than "
                              "the 268,435,456 explain reads (an image of 40,000,000 pixels needs less); downscale "
                              "it first")]


def test_the_python_api_refuses_an_image_file_too_large_to_be_one_before_reading_it(tmp_path):
    from explain.images import load_image
    from explain.sources import MAX_IMAGE_FILE_BYTES, OversizedImageError

    with open(tmp_path / "huge.png", "wb") as sparse:
        sparse.truncate(MAX_IMAGE_FILE_BYTES + 1)
    with pytest.raises(OversizedImageError, match=r"huge\.png': a file of 268,435,457 bytes, more than"):
        load_image(tmp_path / "huge.png")


@pytest.mark.parametrize("nan_on_the_image_itself, where", [(True, "(the image itself, unmasked: NaN or infinite"),
                                                           (False, "(a masked image: NaN or infinite")])
def test_non_finite_scores_name_the_image_they_came_for(nan_on_the_image_itself, where):
    # review 44: NaN for the unmasked image (the first call) was reported as "a masked image"
    from explain.explainer import explain_image

    image = red_square_scene()

    def classifier(batch):
        unmasked = np.array([np.array_equal(masked, image) for masked in batch])
        nan = unmasked if nan_on_the_image_itself else ~unmasked
        return [np.array([np.nan, 0.5]) if bad else np.array([0.3, 0.7]) for bad in nan]

    with pytest.raises(PredictorError, match=re.escape(where)):
        explain_image(image, classifier, ExplainConfig(task="classification", num_samples=16, num_segments=4))
