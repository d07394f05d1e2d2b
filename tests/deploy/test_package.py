"""``deploy package``: archive layout, reproducibility, the check inference, and CLI usage errors."""
import json
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from deploy.cli import main
from deploy.errors import PackageError
from deploy.package import (
    check_archive,
    extract_archive,
    package_exported,
    package_model_dir,
    package_zoo,
)
from tests.conftest import REPO


def test_archive_holds_weights_model_json_and_code(tiny_detector_archive):
    with tarfile.open(tiny_detector_archive) as tar:
        names = set(tar.getnames())
    assert {"model.json", "model-symbol.json", "model-0000.params", "code/inference.py",
            "code/serving/handler.py", "code/serving/codecs.py"} <= names
    with tarfile.open(tiny_detector_archive) as tar:
        entry = tar.extractfile("code/inference.py").read().decode()
    assert "transform_fn" in entry and "def input_fn" not in entry


def test_packaging_is_reproducible(tiny_detector_dir, tmp_path):
    first = package_model_dir(tiny_detector_dir, tmp_path / "a.tar.gz", check=False).archive
    second = package_model_dir(tiny_detector_dir, tmp_path / "b.tar.gz", check=False).archive
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.integration  # starts processes (no fixture says so)
def test_package_exported_files_and_check(tiny_classifier_dir, tmp_path):
    result = package_exported(tiny_classifier_dir / "model-symbol.json", tiny_classifier_dir / "model-0000.params",
                              ["red", "green", "blue"], "classification", tmp_path / "c.tar.gz", short_side=32,
                              max_size=64)
    assert json.loads(result.check_output) == {"task": "classification", "rows": 3}
    model_dir = extract_archive(result.archive, tmp_path / "x")
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["task"] == "classification" and spec["preprocess"]["short_side"] == 32


@pytest.mark.integration  # starts processes (no fixture says so)
def test_a_model_that_cannot_run_fails_the_check_and_leaves_no_archive(tiny_detector_dir, tmp_path):
    out = tmp_path / "broken.tar.gz"
    with pytest.raises(PackageError, match="failed its check inference"):
        package_exported(tiny_detector_dir / "model-symbol.json", tiny_detector_dir / "model-symbol.json",
                         ["a", "b", "c"], "detection", out)
    assert not out.exists()


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
def test_a_failed_check_keeps_the_previous_archive_and_leaves_no_temporary_file(
        tiny_detector_dir, tmp_path):
    out = tmp_path / "model.tar.gz"
    package_model_dir(tiny_detector_dir, out, check=False)
    previous = out.read_bytes()
    with pytest.raises(PackageError, match="failed its check inference"):
        package_exported(tiny_detector_dir / "model-symbol.json", tiny_detector_dir / "model-symbol.json",
                         ["a", "b", "c"], "detection", out)
    assert out.read_bytes() == previous
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.tar.gz"]


def test_unsafe_archives_are_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escape.txt")
    with pytest.raises(PackageError, match="unsafe entry"):
        extract_archive(evil, tmp_path / "out")
    with pytest.raises(PackageError, match="not a readable model.tar.gz"):
        check_archive(payload)


@pytest.mark.integration  # starts processes (no fixture says so)
def test_zoo_model_with_a_class_subset_offline(tmp_path):
    result = package_zoo("yolo3_mobilenet0.25_coco", tmp_path / "zoo.tar.gz", classes=["person", "car"],
                         pretrained=False)
    assert result.spec.classes == ["person", "car"]
    assert result.spec.preprocess.short_side == 416
    assert json.loads(result.check_output)["task"] == "detection"


def test_unknown_zoo_name_is_a_clear_error(tmp_path):
    with pytest.raises(PackageError, match="unknown GluonCV model-zoo name 'yolo_nonexistent'"):
        package_zoo("yolo_nonexistent", tmp_path / "z.tar.gz", pretrained=False)


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one source"),
    (["--zoo", "a", "--model-dir", "."], "got --zoo and --model-dir"),
    (["--symbol", "setup.cfg"], "--symbol and --params go together"),
    (["--symbol", "setup.cfg", "--params", "setup.cfg"], "--classes is required"),
    (["--zoo", "x", "--classes", "a,,b"], "give class names separated by commas"),
    (["--zoo", "x", "--classes", "a,a"], "class names must be unique"),
    (["--zoo", "x", "--short-side", "512", "--max-size", "256"], "must be >= --short-side"),
    (["--zoo", "x", "--score-threshold", "1.5"], "1.5 is not in the range 0.0<=x<=1.0"),
])
def test_package_usage_errors(args, message, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["package", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.integration  # starts processes (no fixture says so)
def test_cli_reports_a_failure_on_one_line_with_exit_1(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "deploy", "package", "--zoo", "no_such_model", "--no-pretrained",
         "--out", str(tmp_path / "m.tar.gz")],
        cwd=str(REPO), capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines()[-1].startswith("error: unknown GluonCV model-zoo name")
    assert "Traceback" not in completed.stderr
