"""--out is the tool's own only when marked: a run writes and deletes only what it created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from click.testing import CliRunner
from PIL import Image

from explain.cli import main
from explain.manifest import OUT_MARKER, read_manifests
from tests.explain.test_explainer import red_square_scene


def cli(args):
    return CliRunner().invoke(main, [str(arg) for arg in args], prog_name="python -m explain")


def scenes(folder, count=2):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(red_square_scene(seed=index)).save(folder / f"scene{index}.png")
    return folder


def args(tmp_path, model, *extra):
    return ["--endpoint", model, "--task", "detection", "--num-samples", "16", "--num-segments", "4", "--quiet",
            "--out", tmp_path / "out", *extra, scenes(tmp_path / "images")]


def contents(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def test_a_non_empty_folder_without_the_marker_is_refused(tmp_path, tiny_detector_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"order": 17, "customer": "acme"}\n')
    (out / "report.html").write_text("<p>our quarterly report</p>")
    (out / "notes.txt").write_text("keep me")
    before = contents(out)

    refused = cli(args(tmp_path, tiny_detector_dir))
    assert refused.exit_code == 2, refused.output
    assert "Invalid value for '--out'" in refused.output
    assert (f"{out} is not empty (manifest.jsonl, notes.txt, report.html) and is "
            f"not a clearsight output folder (no {OUT_MARKER} file); choose a new or empty --out, or add "
            "--allow-non-empty-out to write into it anyway (clearsight then adds only its own files)"
            ) in " ".join(refused.output.split())
    still = cli(args(tmp_path, tiny_detector_dir, "--allow-non-empty-out"))
    assert still.exit_code == 2, still.output
    assert (f"{out} holds manifest.jsonl, report.html, not written by clearsight; move them elsewhere or "
            "choose another --out") in " ".join(still.output.split())
    assert contents(out) == before

    for name in ("manifest.jsonl", "report.html"):
        (out / name).rename(tmp_path / name)
    used = cli(args(tmp_path, tiny_detector_dir, "--allow-non-empty-out"))
    assert used.exit_code == 0, used.output
    assert (out / "notes.txt").read_text() == "keep me" and (out / OUT_MARKER).is_file()
    again = cli(args(tmp_path, tiny_detector_dir))  # marked now: no option needed to resume
    assert again.exit_code == 0 and "2 image(s) were finished by an earlier run" in again.stdout


def test_a_folder_of_an_earlier_version_is_resumed(tmp_path, tiny_detector_dir):
    first = cli(args(tmp_path, tiny_detector_dir))
    assert first.exit_code == 0, first.output
    (tmp_path / "out" / OUT_MARKER).unlink()  # made before markers existed: its manifest says whose it is
    again = cli(args(tmp_path, tiny_detector_dir))
    assert again.exit_code == 0, again.output
    assert "2 image(s) were finished by an earlier run" in again.stdout


def test_restart_removes_only_the_files_its_manifest_lists(tmp_path):
    from explain import ExplainConfig, RunOptions, run_explanations
    from tests.explain.test_explainer import red_square_detector

    out, images = tmp_path / "out", scenes(tmp_path / "images")
    two_targets = ExplainConfig(num_samples=16, num_segments=4, max_objects=2)
    run_explanations([images], red_square_detector, two_targets, out, RunOptions(progress=False))
    assert (out / "shap_scene0.png_box2_object.jpeg").is_file()
    (out / "manifest-mine.jsonl").write_text("my own line\n")
    (out / "shap_holiday_box1_object.jpeg").write_bytes(b"a user's picture with a clearsight-like name")
    (out / "notes.txt").write_text("keep me")
    mine = {name: contents(out)[name] for name in ("manifest-mine.jsonl", "shap_holiday_box1_object.jpeg",
                                                   "notes.txt")}

    one_target = ExplainConfig(num_samples=16, num_segments=4, max_objects=1)
    run_explanations([images], red_square_detector, one_target, out, RunOptions(progress=False, restart=True))
    after = contents(out)
    assert {name: after.get(name) for name in mine} == mine
    assert "shap_scene0.png_box2_object.jpeg" not in after  # listed by the first run, not written again
    assert "shap_scene0.png_box1_object.jpeg" in after
    assert {entry["settings"]["max_objects"] for entry in read_manifests(out)} == {1}


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_folders_of_other_hosts_and_live_processes_are_kept(tmp_path, tiny_detector_dir):
    from explain.runner import _host_name

    out = tmp_path / "out"
    first = cli(args(tmp_path, tiny_detector_dir))
    assert first.exit_code == 0, first.output
    host, gone = _host_name(), dead_pid()
    kept = [f".staging-{gone}@other-host-abc123", f".staging-{os.getpid()}@{host}-def456", f".staging-{gone}-ghi789"]
    stale = f".staging-{gone}@{host}-jkl012"
    for name in kept + [stale]:
        (out / name).mkdir()
        (out / name / "scene0.png_shap.npz").write_bytes(b"work in progress")
    again = cli(args(tmp_path, tiny_detector_dir))
    assert again.exit_code == 0, again.output
    assert all((out / name / "scene0.png_shap.npz").is_file() for name in kept)
    assert not (out / stale).exists()
    assert socket.gethostname()  # the host part comes from here


def test_a_manifest_that_is_not_utf8_is_a_usage_error(tmp_path, tiny_detector_dir):
    first = cli(args(tmp_path, tiny_detector_dir))
    assert first.exit_code == 0, first.output
    (tmp_path / "out" / "manifest-old.jsonl").write_bytes(b'{"key": "caf\xe9"}\n')
    result = cli(args(tmp_path, tiny_detector_dir))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output
    assert (f"{tmp_path / 'out'} holds manifest-old.jsonl, whose line 1 is not UTF-8 "
            "text: it is not a clearsight manifest (those are JSON lines); move it out of --out or choose another "
            "--out") in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_out_that_is_a_file_is_a_usage_error(tmp_path, tiny_detector_dir):
    (tmp_path / "out").write_text("a file")
    result = cli(args(tmp_path, tiny_detector_dir))
    assert result.exit_code == 2
    assert "Invalid value for '--out'" in result.output and (tmp_path / "out").read_text() == "a file"
