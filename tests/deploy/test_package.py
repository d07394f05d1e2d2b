"""``deploy package``: archive layout, reproducibility, the check inference, and CLI usage errors."""
import json
import os
import subprocess
import sys
import tarfile
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from deploy.cli import main
from deploy.errors import PackageError
from deploy.package import (
    check_archive,
    describe,
    extract_archive,
    package_exported,
    package_model_dir,
    package_zoo,
    unknown_zoo_name_message,
)
from tests.conftest import REPO
from tests.tiny_models import export_tiny_model


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
    assert "images_per_pass" not in spec  # two images in one pass ran: nothing to record


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


def test_a_full_disk_while_extracting_is_named_not_blamed_on_the_archive(tmp_path, monkeypatch):
    """Review 40, D6: with TMPDIR full, explain and deploy serve said "model.tar.gz is not a readable
    model.tar.gz (No space left on device)"."""
    import errno

    payload = tmp_path / "model.json"
    payload.write_text("{}")
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="model.json")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(PackageError, match=f"^cannot extract {archive} into {tmp_path / 'out'}: No space left on "
                                           "device; free some space there, or set TMPDIR to a folder with room$"):
        extract_archive(archive, tmp_path / "out")


def test_an_entry_into_a_sibling_folder_whose_name_starts_like_the_target_is_refused(tmp_path):
    """'../out2/x' resolves outside 'out' but its path starts with it: the check compared strings, so on
    a Python without the tar data filter (3.8 before 3.8.17) it was written beside the folder; here the
    data filter refused it with a misleading 'not a readable model.tar.gz'."""
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../out2/escape.txt")
    with pytest.raises(PackageError, match=r"holds an unsafe entry '\.\./out2/escape.txt'"):
        extract_archive(evil, tmp_path / "out")
    assert not (tmp_path / "out2").exists()


@pytest.mark.integration  # starts processes (no fixture says so)
def test_zoo_model_with_a_class_subset_offline(tmp_path):
    result = package_zoo("yolo3_mobilenet0.25_coco", tmp_path / "zoo.tar.gz", classes=["person", "car"],
                         pretrained=False)
    assert result.spec.classes == ["person", "car"]
    assert result.spec.preprocess.short_side == 416
    assert json.loads(result.check_output)["task"] == "detection"


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
def test_a_graph_that_runs_one_image_per_pass_is_packaged_with_images_per_pass_1(tmp_path):
    """GluonCV's exported Faster R-CNN runs one image per forward pass: the check sent one image per
    request, the archive passed, and every request that put two images in one pass got a 500."""
    model_dir = export_tiny_model(tmp_path / "one", "detection", batch_of_one=True)
    result = package_model_dir(model_dir, tmp_path / "one.tar.gz")
    assert result.spec.images_per_pass == 1
    assert json.loads(result.check_output) == {"task": "detection", "rows": 3}  # the second check, key honoured
    spec = json.loads((extract_archive(result.archive, tmp_path / "x") / "model.json").read_text())
    assert spec["images_per_pass"] == 1
    assert "1 image(s) per forward pass" in describe(result)


def _fixed_size_classifier(directory, side=32):
    """A flatten-then-Dense classifier (AlexNet's and VGG's head) exported at ``side`` x ``side``."""
    import mxnet as mx

    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, strides=2), mx.gluon.nn.Flatten(), mx.gluon.nn.Dense(3))
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, side, side)))
    net.export(str(directory / "fixed"))
    return directory / "fixed-symbol.json", directory / "fixed-0000.params"


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
def test_a_fixed_input_size_classifier_is_caught_at_packaging_and_packs_with_a_centre_crop(tmp_path):
    """The check used a square image only: such a network then answered 500 to every non-square photo."""
    symbol, params = _fixed_size_classifier(tmp_path)
    with pytest.raises(PackageError) as caught:
        package_exported(symbol, params, ["a", "b", "c"], "classification", tmp_path / "c.tar.gz", short_side=32,
                         max_size=128)
    assert str(caught.value).startswith(
        "the packaged model failed its check inference: the network runs on a 32x32 image but not on a 64x32 one (")
    assert str(caught.value).endswith(
        "): it needs a fixed input size (a flatten then Dense head, as AlexNet and VGG have); package it with "
        "--center-crop N (the centre N x N square after the short side is resized to --short-side), N the size "
        "it was exported for")
    assert "\n" not in str(caught.value) and not (tmp_path / "c.tar.gz").exists()
    result = package_exported(symbol, params, ["a", "b", "c"], "classification", tmp_path / "c.tar.gz",
                              short_side=37, max_size=148, center_crop=32)
    spec = json.loads((extract_archive(result.archive, tmp_path / "x") / "model.json").read_text())
    assert spec["preprocess"]["center_crop"] == 32 and spec["preprocess"]["short_side"] == 37


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
def test_a_fixed_input_size_classifier_resized_to_another_size_is_told_about_the_centre_crop(tmp_path):
    """README's AlexNet case without --center-crop: at --short-side 256 the square image fails too,
    and the check ended with MXNet's shape error alone, no word of --center-crop."""
    symbol, params = _fixed_size_classifier(tmp_path)
    with pytest.raises(PackageError) as caught:
        package_exported(symbol, params, ["a", "b", "c"], "classification", tmp_path / "c.tar.gz", short_side=40,
                         max_size=160)
    assert str(caught.value).startswith(
        "the packaged model failed its check inference: the network does not run on a 40x40 image, the short "
        "side resized to --short-side 40 (")
    assert str(caught.value).endswith(
        "): if it needs a fixed input size (a flatten then Dense head, as AlexNet and VGG have), package it with "
        "--center-crop N (the centre N x N square after the short side is resized to --short-side), N the size "
        "it was exported for")
    assert "\n" not in str(caught.value) and not (tmp_path / "c.tar.gz").exists()


@pytest.mark.integration  # starts processes (no fixture says so)
@pytest.mark.parametrize("zoo_name, classes, input_size", [
    # a 64 px forward fixed the deferred shapes: AlexNet's Dense then refused 224 (a raw MXNet traceback)
    ("alexnet", ["a", "b"], 224),
    # "kernel size exceed input" at 64 px; Inception's input is 299
    ("inceptionv3", ["a", "b"], 299),
    # "does not name its classes; pass --classes", then "--classes needs a detector with reset_class"
    ("resnet18_v1", ["a", "b", "c"], 224),
])
def test_zoo_classifiers_package_offline_with_gluoncvs_preset(tmp_path, zoo_name, classes, input_size):
    result = package_zoo(zoo_name, tmp_path / "zoo.tar.gz", classes=classes, pretrained=False)
    preprocess = result.spec.preprocess
    assert result.spec.classes == classes and result.spec.task == "classification"
    assert (preprocess.short_side, preprocess.center_crop) == ({224: 256, 299: 342}[input_size], input_size)
    assert json.loads(result.check_output) == {"task": "classification", "rows": len(classes)}


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
@pytest.mark.parametrize("zoo_name", [
    # Xavier reached the 1-D gamma of the BatchNorm GluonCV's SSD feature expander adds: a 60-line traceback
    "ssd_512_mobilenet1.0_voc",
    # ids and scores (N, K), not (N, K, 1): the check failed in a numpy broadcast
    "center_net_resnet18_v1b_voc",
])
def test_zoo_detectors_package_offline(tmp_path, zoo_name):
    result = package_zoo(zoo_name, tmp_path / "zoo.tar.gz", pretrained=False)
    assert result.spec.task == "detection" and len(result.spec.classes) == 20
    assert result.spec.preprocess.short_side == 512 and result.spec.images_per_pass is None
    check = json.loads(result.check_output)
    assert check["task"] == "detection" and 0 <= check["rows"] <= 100


def test_a_faster_rcnn_archive_runs_one_image_per_pass_even_unchecked(faster_rcnn_package):
    """GluonCV's exported Faster R-CNN refuses two images in one pass (a Concat in its RPN): the check finds
    that, but an archive packaged without the check served every multi-image request with a 500."""
    result, path = faster_rcnn_package
    assert result.spec.images_per_pass == 1 and result.check_output == ""
    with tarfile.open(path) as archive:
        spec = json.load(archive.extractfile("model.json"))
    assert spec["images_per_pass"] == 1 and spec["preprocess"]["short_side"] == 600


def test_mask_rcnn_is_refused_up_front_naming_the_supported_families(tmp_path):
    with pytest.raises(PackageError) as caught:
        package_zoo("mask_rcnn_resnet18_v1b_coco", tmp_path / "z.tar.gz", pretrained=False)
    assert str(caught.value) == (
        "'mask_rcnn_resnet18_v1b_coco' cannot be served: Mask R-CNN returns masks as a fourth output; the "
        "supported detector families are yolo3, ssd, faster_rcnn, center_net")


def test_zoo_names_are_matched_in_any_case_as_gluoncv_matches_them(tmp_path):
    """GluonCV's get_model lower-cases a name, but the family checks matched it as typed: "SSD_512_..." was
    packaged with the classifier's 224 preset and "Mask_RCNN_..." was built instead of refused up front."""
    result = package_zoo("SSD_512_mobilenet1.0_voc", tmp_path / "ssd.tar.gz", pretrained=False, check=False)
    assert result.spec.task == "detection" and result.spec.preprocess.short_side == 512
    assert result.spec.preprocess.max_size == 1024
    with pytest.raises(PackageError) as caught:
        package_zoo("Mask_RCNN_resnet18_v1b_coco", tmp_path / "z.tar.gz", pretrained=False)
    assert str(caught.value).startswith(
        "'mask_rcnn_resnet18_v1b_coco' cannot be served: Mask R-CNN returns masks as a fourth output;")


def test_a_capitalised_faster_rcnn_name_is_packaged_with_images_per_pass_1(tmp_path, monkeypatch):
    """``images_per_pass`` comes from the family of the name GluonCV builds (the export itself is stubbed:
    a real Faster R-CNN export takes half a minute; the test above covers one)."""
    import deploy.package as packaging

    exported, packaged = [], []

    def export(zoo_name, export_dir, classes, pretrained):
        exported.append(zoo_name)
        return "detection", ["a"], SimpleNamespace(short_side=600, max_size=1000, center_crop=None)

    monkeypatch.setattr(packaging, "export_zoo_model", export)
    monkeypatch.setattr(packaging, "package_exported", lambda *args, **kwargs: packaged.append(args))
    package_zoo("Faster_RCNN_resnet50_v1b_voc", tmp_path / "frcnn.tar.gz", pretrained=False, check=False)
    assert exported == ["faster_rcnn_resnet50_v1b_voc"] and packaged[0][-1] == 1


def test_any_failure_of_the_first_forward_pass_is_one_package_error():
    """gluon raises ValueError and AssertionError too: only MXNetError became a PackageError."""
    import mxnet as mx

    from deploy.package import _run_once

    class Refuses(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            raise ValueError("Xavier initializer cannot be applied to vector gamma.\nIt requires at least 2D.")

    with pytest.raises(PackageError) as caught:
        _run_once(Refuses(), "refuses", 32)
    assert str(caught.value) == "'refuses' does not run on a 32x32 input: ValueError: It requires at least 2D."


@pytest.mark.parametrize("name, message", [
    # GluonCV's own message was cut after its first line: "... is not among the following model list:)"
    ("not_a_model", "unknown GluonCV model-zoo name 'not_a_model'; gluoncv.model_zoo.get_model_list() lists all "),
    ("yolo3_darknet53_vocc", "unknown GluonCV model-zoo name 'yolo3_darknet53_vocc'; did you mean "
                             "yolo3_darknet53_voc, "),
])
def test_unknown_zoo_name_is_a_clear_error(name, message, tmp_path):
    with pytest.raises(PackageError) as raised:
        package_zoo(name, tmp_path / "z.tar.gz", pretrained=False)
    text = str(raised.value)
    assert text.startswith(message), text
    assert "\n" not in text and "model list:" not in text
    assert text.endswith(" names") and "gluoncv.model_zoo.get_model_list()" in text
    assert not (tmp_path / "z.tar.gz").exists()


def test_an_unknown_zoo_name_suggests_only_models_this_project_serves():
    known = ["fcn_resnet50_voc", "simple_pose_resnet50_v1b", "i3d_resnet50_v1_kinetics400", "resnet50_v1_int8",
             "yolo3_darknet53_custom", "mask_rcnn_resnet50_v1b_coco", "resnet50_v1", "yolo3_darknet53_voc"]
    message = unknown_zoo_name_message("fcn_resnet50_vocc", known)
    assert "did you mean resnet50_v1?" in message, message
    assert "yolo3_darknet53_voc?" in unknown_zoo_name_message("yolo3_darknet53_vocc", known)


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one source"),
    (["--zoo", "a", "--model-dir", "."], "got --zoo and --model-dir"),
    (["--symbol", "setup.cfg"], "--symbol and --params go together"),
    (["--symbol", "setup.cfg", "--params", "setup.cfg"], "--classes is required"),
    (["--zoo", "x", "--classes", "a,,b"], "give class names separated by commas"),
    (["--zoo", "x", "--classes", "a,a"], "class names must be unique"),
    (["--symbol", "setup.cfg", "--params", "setup.cfg", "--classes", "a", "--short-side", "512", "--max-size", "256"],
     "must be >= --short-side"),
    # review 45: a source that reads neither was told to fix --max-size
    (["--model-dir", "models/shapes-detector", "--short-side", "2000"], "--short-side: not used with --model-dir"),
    (["--zoo", "x", "--score-threshold", "1.5"], "1.5 is not in the range 0.0<=x<=1.0"),
    (["--zoo", "x", "--center-crop", "224"], "--center-crop goes with --symbol/--params"),
    # review 43: options a source does not read were dropped without a word (the archive kept model.json's)
    (["--model-dir", "models/shapes-detector", "--classes", "a,b", "--score-threshold", "0.9", "--top-k", "2",
      "--task", "classification", "--short-side", "300"],
     "--classes, --task, --short-side, --score-threshold, --top-k: not used with --model-dir (a --model-dir model "
     "keeps its model.json: edit that file, or package the weights with --symbol/--params and these options)"),
    (["--model-dir", "models/shapes-detector", "--no-pretrained"], "--pretrained/--no-pretrained: not used with "
                                                                  "--model-dir"),
    (["--zoo", "x", "--task", "classification", "--max-size", "2000"],
     "--task, --max-size: not used with --zoo (a --zoo model gets the zoo's own task and preprocessing)"),
    (["--symbol", "setup.cfg", "--params", "setup.cfg", "--classes", "a", "--no-pretrained"],
     "--pretrained/--no-pretrained: not used with --symbol/--params"),
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


def _model_dir(tmp_path, name, source, model_json=None):
    """A copy of ``source``'s weights in ``tmp_path/name`` with ``model_json`` as its model.json (none when None)."""
    directory = tmp_path / name
    directory.mkdir()
    for weights in ("model-symbol.json", "model-0000.params"):
        (directory / weights).write_bytes((source / weights).read_bytes())
    if model_json is not None:
        (directory / "model.json").write_text(model_json)
    return directory


def _mistake(name, tmp_path, source):
    """The command line of one common mistake (run from ``tmp_path``)."""
    spec = json.loads((source / "model.json").read_text())
    if name == "no model.json":
        return ["package", "--model-dir", str(_model_dir(tmp_path, "bare", source)), "--out", "m.tar.gz"]
    if name == "model.json not JSON":
        return ["package", "--model-dir", str(_model_dir(tmp_path, "bad", source, "{task: detection")),
                "--out", "m.tar.gz"]
    if name == "model.json invalid":
        return ["package", "--model-dir", str(_model_dir(tmp_path, "bad", source, json.dumps(dict(spec, top_k=0)))),
                "--out", "m.tar.gz"]
    if name == "weights missing":
        named = json.dumps(dict(spec, params_file="other-0000.params"))
        return ["package", "--model-dir", str(_model_dir(tmp_path, "bad", source, named)), "--out", "m.tar.gz"]
    if name == "--out under a file":
        (tmp_path / "afile").write_text("")
        return ["package", "--model-dir", str(source), "--out", str(tmp_path / "afile" / "m.tar.gz")]
    if name == "--symbol not JSON":
        (tmp_path / "notjson").write_text("notjson")
        (tmp_path / "x.params").write_bytes(b"x")
        return ["package", "--symbol", "notjson", "--params", "x.params", "--classes", "a", "--task", "detection",
                "--out", "m.tar.gz"]
    if name == "--symbol JSON but no network":
        (tmp_path / "list-symbol.json").write_text("[1, 2]")
        (tmp_path / "x.params").write_bytes(b"x")
        return ["package", "--symbol", "list-symbol.json", "--params", "x.params", "--classes", "a",
                "--out", "m.tar.gz"]
    from deploy.local_endpoint import free_port

    if name == "serve: model.json not JSON":
        return ["serve", "--model", str(_model_dir(tmp_path, "bad", source, "{task: detection")),
                "--port", str(free_port())]
    if name == "serve: neither code/ nor model.json":
        (tmp_path / "empty").mkdir()
        return ["serve", "--model", str(tmp_path / "empty"), "--port", str(free_port())]
    if name == "serve: weights missing":
        named = json.dumps(dict(spec, symbol_file="other-symbol.json"))
        return ["serve", "--model", str(_model_dir(tmp_path, "bad", source, named)), "--port", str(free_port())]
    if name == "serve: archive not gzip":
        (tmp_path / "junk.tar.gz").write_text("junk")
        return ["serve", "--model", str(tmp_path / "junk.tar.gz"), "--port", str(free_port())]
    if name == "serve: archive without code/inference.py":
        with tarfile.open(tmp_path / "bare.tar.gz", "w:gz") as archive:
            archive.add(str(source / "model.json"), arcname="model.json")
        return ["serve", "--model", str(tmp_path / "bare.tar.gz"), "--port", str(free_port())]
    raise AssertionError(name)


@pytest.mark.parametrize("name, message", [
    ("no model.json", "error: {tmp}/bare/model.json not found: every packaged model needs a model.json"),
    ("model.json not JSON", "error: {tmp}/bad/model.json is not valid JSON: Expecting property name enclosed in "
                            "double quotes: line 1 column 2 (char 1)"),
    ("model.json invalid", "error: {tmp}/bad/model.json: top_k must be a positive integer, got 0"),
    ("weights missing", "error: {tmp}/bad/other-0000.params named in model.json does not exist"),
    ("--out under a file", "error: cannot write the archive {tmp}/afile/m.tar.gz: {tmp}/afile is not a directory"),
    ("--symbol not JSON", "error: notjson is not an exported MXNet symbol file (a -symbol.json written by "
                          "HybridBlock.export): it is not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("--symbol JSON but no network", "error: list-symbol.json is not an exported MXNet symbol file (a -symbol.json "
                                     "written by HybridBlock.export): it has no \"nodes\""),
    ("serve: model.json not JSON", "error: {tmp}/bad/model.json is not valid JSON: Expecting property name"),
    ("serve: weights missing", "error: {tmp}/bad/other-symbol.json named in model.json does not exist"),
    ("serve: neither code/ nor model.json", "error: {tmp}/empty has neither code/inference.py nor a model.json; "
                                            "build a model with `clearsight deploy package`"),
    ("serve: archive not gzip", "error: {tmp}/junk.tar.gz is not a readable model.tar.gz (not a gzip file)"),
    ("serve: archive without code/inference.py", "error: {tmp}/bare.tar.gz has no code/inference.py; build it with "
                                                 "`clearsight deploy package`"),
])
def test_common_mistakes_are_one_line_errors_with_exit_1(name, message, tiny_detector_dir, tmp_path, monkeypatch,
                                                          capsys):
    """`python -m deploy`'s entry point (run) on mistakes that printed a traceback (ModelSpecError,
    FileExistsError, MXNetError): one line on stderr naming the problem, exit 1."""
    from deploy.cli import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["deploy", *_mistake(name, tmp_path, tiny_detector_dir)])
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(message.format(tmp=tmp_path)), stderr
    if name.startswith("serve"):  # review 34: checked before "starting multi-model-server ... stopping ..."
        # (an archive too, since 2026-12-03: it is extracted before "starting ...")
        assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "m.tar.gz").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no temporary archive


SHAPES_CLASSIFIER = REPO / "models" / "shapes-classifier"  # 3 class scores: circle, square, triangle
SHAPES_DETECTOR = REPO / "models" / "shapes-detector"  # a CenterNet with 3 classes


def _class_mistake(source, classes, tmp_path, tiny_detector_dir):
    """The command line packaging ``source`` (a shipped model, or "tiny detector") with ``classes``:
    a comma-separated --classes, or a list written into a copy's model.json (--model-dir)."""
    source = tiny_detector_dir if source == "tiny detector" else source
    spec = json.loads((source / "model.json").read_text())
    if isinstance(classes, list):
        named = json.dumps(dict(spec, classes=classes))
        return ["package", "--model-dir", str(_model_dir(tmp_path, "names", source, named)), "--out", "m.tar.gz"]
    return ["package", "--symbol", str(source / "model-symbol.json"), "--params", str(source / "model-0000.params"),
            "--classes", classes, "--task", spec["task"], "--short-side", str(spec["preprocess"]["short_side"]),
            "--out", "m.tar.gz"]


CHECK_FAILED = "error: the packaged model failed its check inference: "


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
@pytest.mark.parametrize("source, classes, message", [
    (SHAPES_CLASSIFIER, "a,b", "the network returns 3 class scores but --classes names 2 classes (a, b); give one "
                               "name per class score, in class-id order"),
    (SHAPES_CLASSIFIER, "a,b,c,d", "the network returns 3 class scores but --classes names 4 classes (a, b, c, d)"),
    (SHAPES_CLASSIFIER, ["circle", "square"], "the network returns 3 class scores but {tmp}/names/model.json names "
                                              "2 classes (circle, square)"),
    # the graph says how many classes (its CenterNet heatmap): too few and too many names are refused
    (SHAPES_DETECTOR, "a,b", "the network has 3 classes (its CenterNet class heatmap) but --classes names 2 classes "
                             "(a, b); give one name per class, in class-id order"),
    (SHAPES_DETECTOR, "a,b,c,d,e", "the network has 3 classes (its CenterNet class heatmap) but --classes names 5 "
                                   "classes (a, b, c, d, e)"),
    (SHAPES_DETECTOR, ["circle", "square"], "the network has 3 classes (its CenterNet class heatmap) but "
                                            "{tmp}/names/model.json names 2 classes (circle, square)"),
    # a graph that does not say: a class id it detects on the check images without a name
    ("tiny detector", "a,b", "the network detected class id 2 on the check images but --classes names 2 classes "
                             "(a, b), ids 0 to 1; give one name per class, in class-id order"),
    ("tiny detector", ["circle"], "the network detected class id 2 on the check images but {tmp}/names/model.json "
                                  "names 1 class (circle), id 0; give one name per class"),
])
def test_class_names_that_do_not_fit_the_network_fail_the_check(source, classes, message, tiny_detector_dir,
                                                                 tmp_path, monkeypatch, capsys):
    """`package` printed "check inference ok" for 2 names of a 3-class classifier or detector; explaining
    the archive then failed with an error about --label-headers, which the user never gave."""
    from deploy.cli import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["deploy", *_class_mistake(source, classes, tmp_path, tiny_detector_dir)])
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(CHECK_FAILED + message.format(tmp=tmp_path)), line
    assert not (tmp_path / "m.tar.gz").exists()


@pytest.mark.integration  # starts processes (the check inference runs in a fresh interpreter)
def test_unreadable_weights_fail_the_check_with_one_line(tiny_detector_dir, tmp_path):
    (tmp_path / "x.params").write_bytes(b"not a params file")
    completed = subprocess.run(
        [sys.executable, "-m", "deploy", "package", "--symbol", str(tiny_detector_dir / "model-symbol.json"),
         "--params", "x.params", "--classes", "a,b,c", "--out", "m.tar.gz"],
        cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 1
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("error: the packaged model failed its check inference: model-0000.params is not an "
                           "MXNet parameter file that fits model-symbol.json: Check failed: ")
    assert line.endswith("Invalid NDArray file format")
    assert not (tmp_path / "m.tar.gz").exists()


def test_a_variable_of_an_option_the_source_does_not_read_is_warned_about_and_not_used(monkeypatch, tmp_path):
    # review 45: a variable set in the shell for --symbol packages must not stop every --model-dir package
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["package", "--model-dir", "models/shapes-detector", "--no-check", "--out",
                                       str(tmp_path / "m.tar.gz")], env={"CLEARSIGHT_PACKAGE_TOP_K": "5"})
    assert result.exit_code == 0, result.output
    assert ("Warning: CLEARSIGHT_PACKAGE_TOP_K is set but not used: --model-dir does not read --top-k"
            in result.output)
    with tarfile.open(tmp_path / "m.tar.gz") as archive:
        assert json.load(archive.extractfile("model.json"))["top_k"] != 5
