"""--out is the tool's own only when marked: a run writes and deletes only what it created."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
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
            "--allow-non-empty-out (in Python: RunOptions(allow_non_empty_out=True)) to write into it anyway "
            "(clearsight then adds only its own files)") in " ".join(refused.output.split())
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
    from explain.owners import host_name as _host_name

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


def test_an_image_explained_again_loses_only_its_own_outputs_the_new_run_does_not_write(tmp_path):
    """Same key, new bytes with fewer targets: the old box2 heatmap goes, as does box3 left unlisted by a
    run killed before its manifest line; files of stems that start like it, or a user's look-alike, stay."""
    import json

    from explain import ExplainConfig, RunOptions, run_explanations
    from tests.explain.test_explainer import red_square_detector, textured_image

    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    neighbours = ("xx.png", "x.png2.png", "x.png_box1.png", "x.jpg")  # stems xx.png, x.png2.png, ..., x
    for index, name in enumerate(("x.png",) + neighbours):
        Image.fromarray(red_square_scene(seed=index)).save(images / name)
    config = ExplainConfig(num_samples=16, num_segments=4)
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    assert {"shap_x.png_box1_object.jpeg", "shap_x.png_box2_object.jpeg"} <= set(contents(out))
    # a run killed after moving box3 in, before its manifest line: its staging folder's journal lists it
    key = next(json.loads(line)["key"] for line in (out / "manifest.jsonl").read_text().splitlines()
               if json.loads(line)["stem"] == "x.png")
    killed_run_staging(out, key, ["shap_x.png_box3_object.jpeg"])
    (out / "shap_x.png_box3_object.jpeg").write_bytes(b"written by a run killed before its manifest line")
    (out / "shap_x.png_box02_object.jpeg").write_bytes(b"a user's file: clearsight never writes box02")
    before = contents(out)

    Image.fromarray(textured_image(seed=9)).save(images / "x.png")  # no red square: one target left
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    after = contents(out)
    gone = {"shap_x.png_box2_object.jpeg", "shap_x.png_box3_object.jpeg"}
    assert set(after) == set(before) - gone
    rewritten = {"shap_x.png_box1_object.jpeg", "x.png_objects.jpeg", "x.png_shap.npz", "manifest.jsonl",
                 "analysis.json", "report.html"}
    assert {name: after[name] for name in set(after) - rewritten} == {
        name: before[name] for name in set(before) - gone - rewritten}  # the neighbours' bytes untouched
    analysis = json.loads((out / "analysis.json").read_text())
    listed = {name for item in analysis["images"] for name in item["files"]}
    x_summary = next(item for item in analysis["images"] if item["stem"] == "x.png")
    assert len(x_summary["targets"]) == 1
    assert sorted(x_summary["files"]) == ["shap_x.png_box1_object.jpeg", "x.png_objects.jpeg", "x.png_shap.npz"]
    # every per-image file in --out is one the report lists, except the user's own look-alike
    assert set(after) - listed == {".clearsight-output", "manifest.jsonl", "analysis.json", "report.html",
                                   "shap_x.png_box02_object.jpeg"}


def killed_run_staging(out, key, files):
    """A staging folder of a process of this host that no longer runs, its journal listing ``files``."""
    import json
    import subprocess
    import sys

    from explain.owners import host_name as _host_name
    from explain.runner import STAGING_JOURNAL, STAGING_PREFIX

    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True, check=True)
    staging = out / f"{STAGING_PREFIX}{process.stdout.strip()}@{_host_name()}-killed"
    staging.mkdir()
    (staging / STAGING_JOURNAL).write_text(json.dumps({"key": key, "files": files}), encoding="utf-8")
    return staging


def test_files_named_as_outputs_that_no_run_wrote_are_refused_not_deleted(tmp_path):
    """Review 23: a run deleted every shap_<stem>_box<k>_object.jpeg numbered past its own targets and wrote
    over the others, listed or not: Clarify's heatmaps copied in for a comparison (same names), or a user's
    file in a folder clearsight owns (--restart). Now a run refuses to start over such files; a killed run's
    own unlisted files are known from its staging folder's journal, which stays until they are listed."""
    from explain import ExplainConfig, RunOptions, run_explanations
    from explain.errors import ConfigError
    from tests.explain.test_explainer import red_square_detector

    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    out.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(images / "scene.png")
    clarify = {f"shap_scene.png_box{k}_object.jpeg": f"clarify {k}".encode() for k in (1, 2, 3)}
    clarify["scene.png_objects.jpeg"] = b"clarify objects"
    for name, data in clarify.items():
        (out / name).write_bytes(data)
    config = ExplainConfig(num_samples=16, num_segments=4)
    for options in (RunOptions(progress=False, allow_non_empty_out=True),
                    RunOptions(progress=False, allow_non_empty_out=True, restart=True)):
        with pytest.raises(ConfigError, match=r"holds 4 file\(s\) named as this run's outputs that no clearsight "
                                              r"run there wrote \(scene.png_objects.jpeg, shap_scene.png_box1"):
            run_explanations([images], red_square_detector, config, out, options)
        assert {name: (out / name).read_bytes() for name in clarify} == clarify

    owned = tmp_path / "owned"
    run_explanations([images], red_square_detector, config, owned, RunOptions(progress=False))
    (owned / "shap_scene.png_box3_object.jpeg").write_bytes(b"my notes")
    with pytest.raises(ConfigError, match="shap_scene.png_box3_object.jpeg"):
        run_explanations([images], red_square_detector, config, owned, RunOptions(progress=False, restart=True))
    assert (owned / "shap_scene.png_box3_object.jpeg").read_bytes() == b"my notes"


def test_a_killed_runs_unlisted_files_stay_known_across_another_interrupted_run(tmp_path):
    from explain import ExplainConfig, RunOptions, run_explanations
    from explain.runner import STAGING_JOURNAL, prepare_out_dir
    from tests.explain.test_explainer import red_square_detector

    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(images / "scene.png")
    config = ExplainConfig(num_samples=16, num_segments=4)
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    (out / "manifest.jsonl").unlink()  # as if killed between moving the files in and the manifest line
    written = sorted(name for name in os.listdir(out) if name.startswith(("shap_", "scene")))
    staging = killed_run_staging(out, "scene.png", written)
    (staging / "scene.png_shap.npz").write_bytes(b"a file not moved yet")
    prepare_out_dir(out, config, restart=False)  # a run that stops before it reaches the image
    assert sorted(path.name for path in staging.iterdir()) == [STAGING_JOURNAL]  # the journal is kept
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    assert not staging.exists()  # the image's manifest line lists the files now
    assert {name for name in os.listdir(out) if name.startswith(("shap_", "scene"))} == set(written)


@pytest.mark.parametrize("name, box_number", [
    ("shap_x.png_box2_object.jpeg", 2),
    ("shap_x.png_box12_object.jpeg", 12),
    ("shap_x.png2_box2_object.jpeg", None),
    ("shap_xx.png_box2_object.jpeg", None),
    ("shap_x.png_box1.png_box1_object.jpeg", None),
    ("shap_x.png_box02_object.jpeg", None),
    ("shap_x.png_box_object.jpeg", None),
    ("shap_x.png_box2_object.jpeg.tmp", None),
    ("shap_x.png_box\u0662_object.jpeg", None),  # an Arabic-Indic 2: decimal, but never written
    ("x.png_objects.jpeg", None),
])
def test_only_a_stems_exact_heatmap_names_are_its_own(name, box_number):
    from explain.render import heatmap_box_number

    assert heatmap_box_number("x.png", name) == box_number


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_output_honours_the_umask(umask, mode, tmp_path):
    """analysis.json and the marker were 0600 (mkstemp) whatever the umask; the other outputs 0644."""
    from explain import ExplainConfig
    from explain.runner import RunOptions, run_explanations
    from tests.explain.test_explainer import red_square_detector

    previous = os.umask(umask)
    try:
        run_explanations([scenes(tmp_path / "images", 1) / "scene0.png"], red_square_detector,
                         ExplainConfig(num_samples=16, num_segments=4), tmp_path / "out", RunOptions(progress=False))
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "out").iterdir()}
    assert {"analysis.json", OUT_MARKER, "report.html", "manifest.jsonl"} <= set(modes)
    assert modes == dict.fromkeys(modes, mode)


def fake_endpoint_args(url, out, images):
    return ["--endpoint", url, "--task", "detection", "--num-samples", "16", "--num-segments", "4", "--quiet",
            "--out", out, images]


def one_error_line(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    return line


@pytest.fixture()
def unwritable():
    """Makes a folder unwritable even for root (chattr +i where chmod is not enough); undone afterwards."""
    made = []

    def make(folder):
        folder.chmod(0o555)
        made.append(folder)
        try:
            (folder / ".probe").touch()
        except PermissionError:
            return folder
        (folder / ".probe").unlink()
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a folder unwritable here (root without chattr)")
        return folder

    yield make
    for folder in made:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("where", ["under a file", "in /proc", "a link to nothing", "a loop of links"])
def test_an_out_that_cannot_be_created_is_one_error_line(where, tmp_path):
    from tests.fake_endpoint import FakeEndpoint

    if where in ("a link to nothing", "a loop of links"):  # review 40, D8: it said "File exists"
        out = tmp_path / "out"
        target = tmp_path / "gone" if where == "a link to nothing" else out
        out.symlink_to(target)
        reason = (f"it is a symbolic link to {target}, which does not exist (or is a loop of links): create the "
                  "folder it names, or remove the link")
    elif where == "in /proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc")
        out, reason = "/proc/clearsight-out", "No such file or directory"
    else:
        (tmp_path / "photo.png").write_bytes(b"not a folder")
        out, reason = tmp_path / "photo.png" / "out", f"{tmp_path / 'photo.png'} is a file, not a folder"
    with FakeEndpoint("detection") as endpoint:
        result = cli(fake_endpoint_args(endpoint.url, out, scenes(tmp_path / "images")))
    assert one_error_line(result) == f"Error: cannot create --out {out}: {reason}"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("finished_first", [False, True])
def test_an_out_that_cannot_be_written_is_one_error_line(finished_first, tmp_path, unwritable):
    from tests.fake_endpoint import FakeEndpoint

    out = tmp_path / "out"
    images = scenes(tmp_path / "images")
    with FakeEndpoint("detection") as endpoint:
        if finished_first:
            assert cli(fake_endpoint_args(endpoint.url, out, images)).exit_code == 0
        else:
            out.mkdir()
        before = contents(out)
        unwritable(out)
        result = cli(fake_endpoint_args(endpoint.url, out, images))
    assert one_error_line(result).startswith(f"Error: cannot write into --out {out}: ")
    assert one_error_line(result).split(": ")[-1] in ("Permission denied", "Operation not permitted")
    assert contents(out) == before


@pytest.mark.parametrize("step, target", [("an image's outputs", "explain.runner.save_npz"),
                                          ("the report", "explain.runner.write_report")])
def test_a_full_disk_is_one_error_line_and_the_run_resumes(step, target, tmp_path, tiny_detector_dir,
                                                          monkeypatch):
    """A write into an open file fails without a file name (ENOSPC): still one line naming --out."""
    import errno

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patched.setattr(target, full_disk)
        result = cli(args(tmp_path, tiny_detector_dir))
    assert one_error_line(result) == (f"Error: cannot write into --out {out}: No space left on device; the images "
                                      "finished so far are kept in it: once it can be written, run the same command "
                                      "again (without --restart) to resume")
    assert not (out / "report.html").exists()
    assert not (out / "analysis.json").exists()  # review 40, D7: not one without the other (a resume's new
    # analysis.json beside the earlier run's report.html)
    resumed = cli(args(tmp_path, tiny_detector_dir))
    assert resumed.exit_code == 0, resumed.output
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_s3_out_is_refused_not_written_into_a_local_s3_folder(tmp_path, tiny_detector_dir, monkeypatch, workers):
    # --out s3://bucket/run was the local folder ./s3:/bucket/run ("results in s3:/bucket/run")
    monkeypatch.chdir(tmp_path)
    images = scenes(tmp_path / "images")
    refused = cli(["--endpoint", tiny_detector_dir, "--task", "detection", "--num-samples", "16", "--quiet",
                   "--workers", workers, "--out", "s3://bucket/run", images])
    assert refused.exit_code == 2, refused.output
    assert "Invalid value for '--out'" in refused.output
    assert ("s3://bucket/run is an S3 location: explain writes into a local folder; "
            "give one and copy it to S3 afterwards (aws s3 sync), or run `clearsight explain-job`, whose --out "
            "is an S3 prefix") in " ".join(refused.output.split())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images"]


def test_a_run_stopped_while_moving_an_images_files_in_is_resumed_not_refused(tmp_path, monkeypatch):
    """Review 24: Ctrl-C between two renames removed the staging folder and its journal: the files already
    moved were listed nowhere, and the next run (even --restart) refused them as no run's."""
    import explain.runner as runner
    from explain import ExplainConfig, RunOptions, run_explanations
    from tests.explain.test_explainer import red_square_detector

    images, out, clean = tmp_path / "images", tmp_path / "out", tmp_path / "clean"
    images.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(images / "scene.png")
    config = ExplainConfig(num_samples=16, num_segments=4)
    moved = []
    real_replace = os.replace

    def interrupted(source, target):
        if moved:
            raise KeyboardInterrupt
        moved.append(target)
        real_replace(source, target)

    monkeypatch.setattr(runner.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    monkeypatch.setattr(runner.os, "replace", real_replace)
    assert len(moved) == 1 and os.path.isfile(moved[0])
    stagings = [path for path in out.iterdir() if path.name.startswith(".staging-")]
    assert [sorted(path.name for path in staging.iterdir()) for staging in stagings] == [["outputs.json"]]
    # the process that made it still runs here (this test): a new process's run would see it dead
    monkeypatch.setattr(runner, "left_by_a_dead_process", lambda name, prefix: name.startswith(prefix))
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    run_explanations([images], red_square_detector, config, clean, RunOptions(progress=False))

    def outputs(folder):
        return {path.name: path.read_bytes() if path.suffix == ".jpeg" else np.load(path)["shap_values"].tolist()
                for path in folder.iterdir() if path.name.startswith(("shap_", "scene"))}

    assert outputs(out) == outputs(clean) and not [path for path in out.iterdir() if path.name.startswith(".staging-")]


def test_a_planted_journal_names_only_output_files(tmp_path):
    """Review 24: a staging journal someone put into --out listing notes.txt and the folder's mark had --restart
    delete them (the manifest path never deletes such names)."""
    from explain import ExplainConfig, RunOptions, run_explanations
    from explain.manifest import OUT_MARKER
    from tests.explain.test_explainer import red_square_detector

    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(images / "scene.png")
    config = ExplainConfig(num_samples=16, num_segments=4)
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False))
    (out / "notes.txt").write_text("mine")
    killed_run_staging(out, "scene.png", ["notes.txt", OUT_MARKER, "../outside.txt", "scene.png_shap.npz"])
    (tmp_path / "outside.txt").write_text("mine too")
    run_explanations([images], red_square_detector, config, out, RunOptions(progress=False, restart=True))
    assert (out / "notes.txt").read_text() == "mine" and (out / OUT_MARKER).is_file()
    assert (tmp_path / "outside.txt").read_text() == "mine too" and (out / "scene.png_shap.npz").is_file()


def test_figures_a_stopped_run_left_named_in_a_journal_are_not_images_to_explain(tmp_path):
    """Review 25: with --out the image folder, a resume after a stop mid-move explained clearsight's own heatmap."""
    from explain.runner import without_earlier_outputs
    from explain.sources import collect_sources

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(folder / "scene.png")
    Image.fromarray(red_square_scene(seed=1)).save(folder / "shap_scene.png_box1_object.jpeg")  # moved in, unlisted
    killed_run_staging(folder, "scene.png", ["shap_scene.png_box1_object.jpeg"])
    kept = without_earlier_outputs(collect_sources([str(folder)]), folder)
    assert [source.stem for source in kept] == ["scene.png"]
