"""Build ``model.tar.gz``: exported weights + ``model.json`` + ``code/`` (the serving package), then check it runs."""
import difflib
import json
import logging
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import serving
from serving.archive import ArchiveError, directory_entries, extract_tar_gz, write_tar_gz
from serving.errors import ModelSpecError
from serving.model_spec import ModelSpec, Preprocess, load_model_spec

from .errors import PackageError
from .graph_classes import detector_class_count

logger = logging.getLogger(__name__)

SERVING_SOURCE = Path(serving.__file__).resolve().parent
ENTRY_POINT = '''"""SageMaker entry point (SAGEMAKER_PROGRAM=inference.py): the batch-aware handler of serving/."""
from serving.handler import model_fn, transform_fn  # noqa: F401
'''

# GluonCV's transform_test presets per detector family: (short side, long side cap).
FAMILY_PRESETS = {"yolo3": (416, 1024), "ssd": (512, 1024), "faster_rcnn": (600, 1000),
                  "center_net": (512, 1024)}
# Zoo detector families whose exported graph runs one image per forward pass (GluonCV's Faster R-CNN:
# its RPN concatenates proposals for one image; two fail in a Concat): model.json gets "images_per_pass"
# up front, so an archive packaged with --no-check serves batches too (the check finds it otherwise).
FAMILY_IMAGES_PER_PASS = {"faster_rcnn": 1}
# Zoo detectors refused before anything is built: Mask R-CNN returns a fourth output (masks).
UNSUPPORTED_FAMILIES = {"mask_rcnn": "Mask R-CNN returns masks as a fourth output"}
# Exported classifiers (--symbol/--params) without --center-crop: the short side resized, no crop.
CLASSIFIER_PRESET = (224, 1024)
# GluonCV's classification preset (presets.imagenet.transform_eval, and its training scripts'
# evaluation): the centre input_size x input_size of the image whose short side was resized to
# ceil(input_size / 0.875): 256 then 224, or 342 then 299 for Inception. The resized long side
# may be up to 4 times the short side (max_size); more elongated images are refused with 400.
CLASSIFIER_CROP_RATIO = 0.875
CLASSIFIER_MAX_ELONGATION = 4


@dataclass(frozen=True)
class PackageResult:
    """What was written: the archive, its spec, and the check inference's output."""

    archive: Path
    spec: ModelSpec
    check_output: str


def preset_for(zoo_name):
    """GluonCV's test-time resize for a model-zoo detector name: ``(short side, long side cap)``; None for others."""
    for family, preset in FAMILY_PRESETS.items():
        if zoo_name.startswith(family):
            return preset
    return None


# Parts of GluonCV zoo names of models this project does not serve (segmentation, pose, video, depth,
# quantised, custom-class and tracking models): left out of the names an unknown --zoo name suggests.
NOT_SERVED_NAME_PARTS = ("fcn_", "psp_", "deeplab", "danet", "icnet", "fastscnn", "segnet", "pose", "i3d_",
                         "slowfast", "tsn_", "r2plus1d", "c3d", "p3d", "monodepth", "_int8", "_custom",
                         "_kinetics", "_ucf101", "_hmdb51", "_sthsthv2", "smot")


def unknown_zoo_name_message(zoo_name, known):
    """The error for a ``zoo_name`` not among ``known`` (GluonCV's names): up to 5 close names of models
    this project serves, and where the rest are."""
    servable = [name for name in known if not name.startswith(tuple(UNSUPPORTED_FAMILIES))
                and not any(part in name for part in NOT_SERVED_NAME_PARTS)]
    close = difflib.get_close_matches(zoo_name, servable, n=5)
    hint = "did you mean %s? " % ", ".join(close) if close else ""
    return ("unknown GluonCV model-zoo name %r; %sgluoncv.model_zoo.get_model_list() lists all %d names"
            % (zoo_name, hint, len(known)))


def _supported_families():
    return ", ".join(FAMILY_PRESETS)


def classifier_input_size(zoo_name):
    """The square input a GluonCV ImageNet classifier was trained on: 299 for Inception, else 224."""
    return 299 if zoo_name.startswith("inception") else 224


def classifier_preset(input_size):
    """``(short side, long side cap, centre crop)`` of GluonCV's classification preset for ``input_size``."""
    short_side = int(math.ceil(input_size / CLASSIFIER_CROP_RATIO))
    return short_side, CLASSIFIER_MAX_ELONGATION * short_side, input_size


def export_zoo_model(zoo_name, export_dir, classes=None, pretrained=True):
    """Export a GluonCV model-zoo network as ``model-symbol.json`` + ``model-0000.params``.

    ``classes`` resets a detector to a subset of its classes, reusing their weights (as the
    reference notebook does); for a classifier they name its outputs (with ``pretrained=False``
    the network gets one output per name). ``pretrained=False`` gives the same architecture
    with random weights and needs no internet. Returns ``(task, class_names, preprocess)``.
    """
    from gluoncv import model_zoo

    # GluonCV's get_model lower-cases the name: the family checks below must see the name it builds
    # ("Faster_RCNN_..." is a Faster R-CNN, not a classifier with the 224 preset)
    zoo_name = zoo_name.lower()
    for family, reason in UNSUPPORTED_FAMILIES.items():
        if zoo_name.startswith(family):
            raise PackageError("%r cannot be served: %s; the supported detector families are %s"
                               % (zoo_name, reason, _supported_families()))
    detector_preset = preset_for(zoo_name)
    input_size = detector_preset[0] if detector_preset else classifier_input_size(zoo_name)
    options = {}
    if detector_preset is None and classes and not pretrained:
        options["classes"] = len(classes)
    try:
        try:
            net = model_zoo.get_model(zoo_name, pretrained=pretrained, pretrained_base=False, **options)
        except TypeError:  # classifiers take no pretrained_base
            net = model_zoo.get_model(zoo_name, pretrained=pretrained, **options)
    except ValueError as error:
        known = list(model_zoo.get_model_list())
        if zoo_name in known:  # a known name that failed for another reason: GluonCV's whole message
            raise PackageError("GluonCV could not build %r: %s" % (zoo_name, " ".join(str(error).split())))
        raise PackageError(unknown_zoo_name_message(zoo_name, known))
    except Exception as error:  # noqa: BLE001 - downloads fail in many ways
        raise PackageError(
            "could not get pretrained weights for %r (%s); offline, use --no-pretrained for random weights"
            % (zoo_name, error)
        )
    if not pretrained:
        _initialize_randomly(net)
        # materialise deferred shapes at the network's own input size (reset_class copies parameters;
        # a classifier's Dense layer after a flatten fixes its input size here)
        _run_once(net, zoo_name, input_size)
    zoo_classes = list(getattr(net, "classes", []) or [])
    if classes and hasattr(net, "reset_class"):
        unknown = [name for name in classes if name not in zoo_classes]
        if unknown:
            raise PackageError("classes %s are not among %s's classes" % (", ".join(unknown), zoo_name))
        net.reset_class(list(classes), reuse_weights=list(classes))
        zoo_classes = list(classes)
    net.hybridize()
    outputs = _run_once(net, zoo_name, input_size)
    if isinstance(outputs, (list, tuple)) and len(outputs) != 3:
        raise PackageError("%r returns %d outputs; the handler serves detectors with 3 (class ids, scores, "
                           "boxes: the families %s) and classifiers with 1"
                           % (zoo_name, len(outputs), _supported_families()))
    task = "detection" if isinstance(outputs, (list, tuple)) else "classification"
    if task == "detection":
        if classes and not hasattr(net, "reset_class"):
            raise PackageError("--classes needs a detector with reset_class; %r has none" % zoo_name)
        short_side, max_size = detector_preset or CLASSIFIER_PRESET
        preprocess = Preprocess(short_side, max_size)
    else:
        outputs_count = int(outputs.shape[-1])
        if classes:
            zoo_classes = list(classes)
        elif not zoo_classes and outputs_count == 1000:
            from gluoncv.data import ImageNet1kAttr

            zoo_classes = list(ImageNet1kAttr().classes)  # GluonCV's ImageNet classifiers: ImageNet-1k order
        if not zoo_classes:
            raise PackageError("%r does not name its %d classes; pass --classes with %d names"
                               % (zoo_name, outputs_count, outputs_count))
        if len(zoo_classes) != outputs_count:
            raise PackageError("--classes names %d classes but %r has %d outputs; pass %d names%s"
                               % (len(zoo_classes), zoo_name, outputs_count, outputs_count,
                                  "" if not pretrained else " (or --no-pretrained for a network with one "
                                  "output per name)"))
        short_side, max_size, crop = classifier_preset(input_size)
        preprocess = Preprocess(short_side, max_size, center_crop=crop)
    net.export(os.path.join(str(export_dir), "model"))
    return task, zoo_classes, preprocess


def _initialize_randomly(net):
    """Random weights for ``--no-pretrained``: Xavier for weights, BatchNorm's scale and variance 1, offsets 0.

    A parameter with its own initializer keeps it. Xavier alone fails on 1-D parameters that
    have none (the BatchNorm layers GluonCV's SSD feature expander adds to MobileNet and ResNet).
    """
    import mxnet as mx

    with warnings.catch_warnings():  # parameters GluonCV initialised itself (CenterNet's backbone) stay as they are
        warnings.filterwarnings("ignore", message=".*is already initialized")
        for name, param in net.collect_params().items():
            if name.endswith(("gamma", "running_var", "moving_var")):
                default = mx.init.One()
            elif name.endswith(("beta", "running_mean", "moving_mean", "bias")):
                default = mx.init.Zero()
            else:
                default = mx.init.Xavier()
            param.initialize(default_init=default)


def _run_once(net, zoo_name, input_size):
    """One forward pass of a blank ``input_size`` square; PackageError (one line) when the network refuses it."""
    import mxnet as mx

    try:
        outputs = net(mx.nd.zeros((1, 3, input_size, input_size)))
        for output in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            output.wait_to_read()
    except Exception as error:  # noqa: BLE001 - MXNetError, and gluon's ValueError/AssertionError on shapes
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else error.__class__.__name__
        if not isinstance(error, mx.base.MXNetError):
            reason = "%s: %s" % (error.__class__.__name__, reason)
        raise PackageError("%r does not run on a %dx%d input: %s"
                           % (zoo_name, input_size, input_size, reason)) from None
    return outputs


def read_model_dir(model_dir):
    """The validated ``ModelSpec`` of an exported model directory whose weights exist.

    Raises PackageError naming the problem: no or invalid ``model.json``, a weights file it
    names that is missing, a symbol file that is not an exported MXNet graph.
    """
    model_dir = Path(model_dir)
    try:
        spec = load_model_spec(str(model_dir))
    except ModelSpecError as error:
        raise PackageError(error.message) from None
    for name in (spec.symbol_file, spec.params_file):
        if not (model_dir / name).is_file():
            raise PackageError("%s named in model.json does not exist" % (model_dir / name))
    _check_symbol_file(model_dir / spec.symbol_file)
    return spec


def _check_symbol_file(path):
    """Raise PackageError unless ``path`` holds an exported MXNet graph (JSON with ``nodes``), without mxnet."""
    what = "%s is not an exported MXNet symbol file (a -symbol.json written by HybridBlock.export)" % path
    try:
        with open(path, encoding="utf-8") as handle:
            graph = json.load(handle)
    except ValueError as error:  # UnicodeDecodeError included
        raise PackageError("%s: it is not JSON (%s)" % (what, error)) from None
    except OSError as error:
        raise PackageError("%s cannot be read: %s" % (path, error.strerror or error)) from None
    if not isinstance(graph, dict) or "nodes" not in graph:
        raise PackageError('%s: it has no "nodes"' % what)


def stage_model_dir(model_dir, symbol_file, params_file, spec):
    """Copy the weights, write ``model.json`` and ``code/`` into an empty ``model_dir``."""
    model_dir = Path(model_dir)
    shutil.copyfile(symbol_file, model_dir / spec.symbol_file)
    shutil.copyfile(params_file, model_dir / spec.params_file)
    spec.save(str(model_dir))
    code_dir = model_dir / "code"
    (code_dir / "serving").mkdir(parents=True)
    for source in sorted(SERVING_SOURCE.glob("*.py")):
        shutil.copyfile(source, code_dir / "serving" / source.name)
    (code_dir / "inference.py").write_text(ENTRY_POINT)


def write_archive(model_dir, archive):
    """Tar+gzip ``model_dir``'s content reproducibly (sorted names, zero mtimes, root owner)."""
    return write_tar_gz(directory_entries(model_dir), archive)


def extract_archive(archive, target_dir):
    """Extract a model archive safely (no absolute paths, no ``..``, no links)."""
    try:
        return extract_tar_gz(archive, target_dir)
    except ArchiveError as error:
        raise PackageError(error.message)


_CHECK_SCRIPT = """
import io, json, os, sys
import numpy as np
import inference
from serving.errors import ServingError
CROP_HINT = ("package it with --center-crop N (the centre N x N square after the short side is resized to "
             "--short-side), N the size it was exported for")
try:
    model = inference.model_fn(sys.argv[1])
except ServingError as error:
    sys.exit(error.message)
except Exception as error:
    # model_fn's warm-up runs a short_side square: a fixed-size classifier (AlexNet, VGG) packaged with
    # a --short-side other than its input size and no --center-crop fails it
    with open(os.path.join(sys.argv[1], "model.json")) as spec_file:
        spec = json.load(spec_file)
    if spec["task"] != "classification" or spec["preprocess"].get("center_crop") is not None:
        raise
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    side = spec["preprocess"]["short_side"]
    sys.exit("the network does not run on a %dx%d image, the short side resized to --short-side %d (%s): if it "
             "needs a fixed input size (a flatten then Dense head, as AlexNet and VGG have), %s"
             % (side, side, side, lines[-1] if lines else error.__class__.__name__, CROP_HINT))
side = model.spec.preprocess.short_side
names, names_from = model.spec.classes, sys.argv[2]
listed = "%d %s (%s)" % (len(names), "class" if len(names) == 1 else "classes",
                         ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""))
detected_ids = set()
# a square image, then a 3:2 one (photos are rarely square; the long side a multiple of 32, as YOLO wants)
for height, width in ((side, side), (side, max(side + 32, side * 3 // 2 // 32 * 32))):
    image = (np.arange(height * width * 3) % 251).astype(np.uint8).reshape(1, height, width, 3)
    buffer = io.BytesIO(); np.save(buffer, image)
    try:
        body, content_type = inference.transform_fn(model, buffer.getvalue(), "application/x-npy",
                                                    "application/json")
    except Exception as error:
        if height == width:
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        sys.exit("the network runs on a %dx%d image but not on a %dx%d one (%s): it needs a fixed input size "
                 "(a flatten then Dense head, as AlexNet and VGG have); %s"
                 % (side, side, width, height, lines[-1] if lines else error.__class__.__name__, CROP_HINT))
    result = json.loads(body)
    if len(result) != 1:
        sys.exit("expected one result for one image, got %r" % (result,))
    # the raw outputs, before the score threshold: a classifier's class scores, a detector's class ids
    outputs, _ = model.network.forward(image)
    if model.spec.task == "classification":
        if outputs[0].shape[-1] != len(names):
            sys.exit("the network returns %d class scores but %s names %s; give one name per class score, "
                     "in class-id order" % (outputs[0].shape[-1], names_from, listed))
    else:
        detected_ids.update(float(class_id) for class_id in outputs[0].ravel() if class_id != -1)
# a detector does not say how many classes it has: the ids it detects on these images must have names
unnamed = sorted(class_id for class_id in detected_ids if class_id >= len(names))
if unnamed:
    sys.exit("the network detected class id %g on the check images but %s names %s, %s; give one name per "
             "class, in class-id order" % (unnamed[-1], names_from, listed,
                                           "id 0" if len(names) == 1 else "ids 0 to %d" % (len(names) - 1)))
rows = len(result[0])
# two images in one forward pass, as a GPU endpoint runs a request's images (GluonCV's exported
# Faster R-CNN runs one image per pass): a graph that refuses it is reported, and packaged with
# "images_per_pass": 1 in model.json
pair = (np.arange(2 * side * side * 3) % 253).astype(np.uint8).reshape(2, side, side, 3)
summary = {"task": model.spec.task, "rows": rows}
if model.spec.images_per_pass is None:
    try:
        model.network.forward(pair)
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        summary["one_image_per_pass"] = lines[-1][:300] if lines else error.__class__.__name__
        print(json.dumps(summary))
        sys.exit(0)
# both images in one request, with no pixel cap per pass (as on a GPU): one answer per image
model.limits.max_batch_pixels = None
buffer = io.BytesIO(); np.save(buffer, pair)
body, content_type = inference.transform_fn(model, buffer.getvalue(), "application/x-npy", "application/json")
if len(json.loads(body)) != 2:
    sys.exit("expected two results for two images, got %r" % (json.loads(body),))
print(json.dumps(summary))
"""


def check_archive(archive, timeout=300, names_from="model.json"):
    """Extract the archive and run one inference through its own ``code/`` in a fresh interpreter.

    The check also compares the class names with the network: a classifier must return one class
    score per name; a detector must have as many classes as names where its graph says how many
    (``deploy.graph_classes``), and must detect no class id beyond the names on the check images.
    ``names_from`` says where the names came from (``--classes``, ``model.json``) in those errors. Returns the check's one-line JSON summary;
    raises PackageError with the child's error output.
    """
    with tempfile.TemporaryDirectory(prefix="clearsight-check-") as scratch:
        model_dir = extract_archive(archive, scratch)
        _check_detector_classes(model_dir, names_from)
        env = dict(os.environ, PYTHONPATH=str(model_dir / "code"))
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _CHECK_SCRIPT, str(model_dir), names_from], cwd=scratch, env=env,
                capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise PackageError("the packaged model's check inference did not finish within %d s" % timeout) from None
    if completed.returncode != 0:
        # The handler's own errors (ServingError) end the check with their message alone; anything
        # else with a traceback, whose last line names the exception. The whole output is logged.
        logger.info("the check inference's output:\n%s", completed.stderr)
        lines = completed.stderr.strip().splitlines()
        reason = lines[-1].strip() if lines else "its interpreter exited with code %d" % completed.returncode
        raise PackageError("the packaged model failed its check inference: %s" % reason)
    return completed.stdout.strip().splitlines()[-1]


def _check_detector_classes(model_dir, names_from):
    """PackageError when a detector's graph says how many classes it has (``detector_class_count``) and
    its model.json names another number."""
    try:
        spec = load_model_spec(str(model_dir))
        with open(str(Path(model_dir) / spec.symbol_file), encoding="utf-8") as handle:
            graph = json.load(handle)
    except (ModelSpecError, OSError, ValueError):
        return  # the check inference reports these with the handler's own message
    known = detector_class_count(graph) if spec.task == "detection" else None
    if known is None or known[0] == len(spec.classes):
        return
    count, where = known
    listed = ", ".join(spec.classes[:5]) + (", ..." if len(spec.classes) > 5 else "")
    raise PackageError("the packaged model failed its check inference: the network has %d classes (its %s) but "
                       "%s names %d %s (%s); give one name per class, in class-id order"
                       % (count, where, names_from, len(spec.classes),
                          "class" if len(spec.classes) == 1 else "classes", listed))


def package_exported(symbol_file, params_file, classes, task, out, short_side=416, max_size=1024,
                     score_threshold=0.0, top_k=100, check=True, center_crop=None, images_per_pass=None,
                     names_from="--classes"):
    """Package exported ``-symbol.json`` / ``.params`` files into ``out`` (model.tar.gz).

    ``center_crop`` (classifiers): after the short side is resized to ``short_side``, keep the
    centre ``center_crop`` square, GluonCV's classification preset (``serving.model_spec.Preprocess``).
    ``images_per_pass``: most images per forward pass (None: as many as the limits allow; the check
    sets 1 when the graph refuses two). ``names_from``: where ``classes`` came from, for the check's errors.
    """
    for path in (symbol_file, params_file):
        if not Path(path).is_file():
            raise PackageError("%s does not exist" % path)
    _check_symbol_file(symbol_file)
    try:
        spec = ModelSpec(task=task, classes=list(classes),
                         preprocess=Preprocess(short_side, max_size, center_crop=center_crop),
                         score_threshold=score_threshold, top_k=top_k, images_per_pass=images_per_pass)
    except ModelSpecError as error:
        raise PackageError(error.message) from None
    with tempfile.TemporaryDirectory(prefix="clearsight-package-") as scratch:
        stage_model_dir(scratch, symbol_file, params_file, spec)
        return _write_checked(scratch, out, spec, check, names_from)


def package_model_dir(model_dir, out, check=True):
    """Package a directory that already holds exported weights and a ``model.json``."""
    model_dir = Path(model_dir)
    spec = read_model_dir(model_dir)
    with tempfile.TemporaryDirectory(prefix="clearsight-package-") as scratch:
        stage_model_dir(scratch, model_dir / spec.symbol_file, model_dir / spec.params_file, spec)
        return _write_checked(scratch, out, spec, check, str(model_dir / "model.json"))


def package_zoo(zoo_name, out, classes=None, pretrained=True, score_threshold=0.0, top_k=100, check=True):
    """Export a GluonCV model-zoo network and package it into ``out``."""
    zoo_name = zoo_name.lower()  # GluonCV's get_model lower-cases it: the family checks must see the same name
    with tempfile.TemporaryDirectory(prefix="clearsight-export-") as export_dir:
        task, names, preprocess = export_zoo_model(zoo_name, export_dir, classes, pretrained)
        return package_exported(
            os.path.join(export_dir, "model-symbol.json"), os.path.join(export_dir, "model-0000.params"),
            names, task, out, preprocess.short_side, preprocess.max_size, score_threshold, top_k, check,
            preprocess.center_crop, _family_images_per_pass(zoo_name),
            names_from="--classes" if classes else "the model zoo's %s" % zoo_name,
        )


def _family_images_per_pass(zoo_name):
    """``images_per_pass`` known for a zoo name's family (``FAMILY_IMAGES_PER_PASS``), else None."""
    return next((count for family, count in FAMILY_IMAGES_PER_PASS.items() if zoo_name.startswith(family)), None)


def _write_checked(model_dir, out, spec, check, names_from):
    """Archive ``model_dir`` beside ``out``, run the check on that file, then move it onto ``out``.

    ``out`` is replaced (atomically, ``os.replace``) only by an archive that passed its
    check: when the check fails, an ``out`` from an earlier run keeps its bytes, and the
    temporary file is removed.
    """
    out = Path(out)
    _make_parent(out)
    candidate = out.with_name(".%s.%s.unchecked" % (out.name, secrets.token_hex(4)))
    try:
        try:
            write_archive(model_dir, candidate)
        except OSError as error:
            raise _cannot_write(out, error) from None
        output = check_archive(candidate, names_from=names_from) if check else ""
        one_per_pass = json.loads(output).get("one_image_per_pass") if output else None
        if one_per_pass is not None:
            # the graph runs one image per forward pass: record it, archive again, check again
            logger.warning("the network does not run two images in one forward pass (%s): model.json gets "
                           '"images_per_pass": 1, and the handler runs one image per pass', one_per_pass)
            spec = spec.with_images_per_pass(1)
            spec.save(str(model_dir))
            try:
                write_archive(model_dir, candidate)
            except OSError as error:
                raise _cannot_write(out, error) from None
            output = check_archive(candidate, names_from=names_from)
        try:
            os.replace(candidate, out)
        except OSError as error:
            raise _cannot_write(out, error) from None
    finally:
        for leftover in (candidate, candidate.with_name(candidate.name + ".partial")):
            if leftover.exists():
                leftover.unlink()
    if check:
        logger.info("check inference passed: %s", output)
    return PackageResult(out, spec, output)


def _make_parent(out):
    """Create ``out``'s directory; PackageError when a file stands in the way or it cannot be made."""
    for ancestor in out.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise PackageError("cannot write the archive %s: %s is not a directory" % (out, ancestor))
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PackageError("cannot write the archive %s: cannot create %s (%s)"
                           % (out, error.filename or out.parent, error.strerror or error)) from None


def _cannot_write(out, error):
    """PackageError for an OSError while writing ``out`` (its reason only: the file it names is the temporary one)."""
    return PackageError("cannot write the archive %s: %s" % (out, error.strerror or error))


def describe(result):
    """A one-paragraph summary for the CLI."""
    size = result.archive.stat().st_size
    check = json.loads(result.check_output) if result.check_output else None
    text = "wrote %s (%.1f MB): %s, %d classes, short side %d" % (
        result.archive, size / 1e6, result.spec.task, len(result.spec.classes), result.spec.preprocess.short_side)
    if result.spec.preprocess.center_crop is not None:
        text += ", centre crop %d" % result.spec.preprocess.center_crop
    if result.spec.images_per_pass is not None:
        text += ", %d image(s) per forward pass" % result.spec.images_per_pass
    if check:
        text += "; check inference ok"
    return text


__all__ = ["PackageResult", "package_exported", "package_model_dir", "package_zoo", "check_archive",
           "extract_archive"]
