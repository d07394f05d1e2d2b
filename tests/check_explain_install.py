"""make test's check of the explain-only install: the wheel's `clearsight explain` on numpy 2, no mxnet.

Usage: .venv/bin/python -m tests.check_explain_install --env build/venvs/py312-explain

The environment ``--env`` is a Python 3.12 virtualenv with the built wheel installed with the
``explain`` extra (constraints-explain.txt). This script checks that it has numpy >= 2 and no
mxnet, serves the shipped shapes detector on the real local stack with *this* interpreter
(``python -m deploy serve``, the serve extra), runs that environment's ``clearsight explain``
console script on a sample image against it, and checks the outputs: a detection explained,
values that sum to prediction - base value, every file written. Then it runs that console
script again with only a Clarify analysis_config.json (written by this interpreter's SageMaker
SDK, endpoint_name resolved through CLEARSIGHT_EXPLAIN_ENDPOINT_MAP, dataset_uri the sample
folder), where the SDK is absent and the schema check must say it was skipped. Before those, numpy 2's own values given to
the API (``NUMPY2_CHECK``). Exit 0 when all holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from deploy.local_endpoint import free_port
from tests.clarify_configs import ENDPOINT_NAME, sdk_analysis_config

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "shapes-detector"
IMAGE = REPO / "examples" / "shapes" / "samples" / "shapes_2.png"
ENVIRONMENT_CHECK = """
import importlib.util, sys
import numpy
assert sys.version_info[:2] >= (3, 12), sys.version
assert int(numpy.__version__.split(".")[0]) >= 2, "numpy " + numpy.__version__
assert importlib.util.find_spec("mxnet") is None, "mxnet is installed"
import explain, clearsight.cli  # the package and the console script's module import without mxnet
assert "mxnet" not in sys.modules
print("python %d.%d, numpy %s, no mxnet" % (sys.version_info[0], sys.version_info[1], numpy.__version__))
"""

# numpy 2's own types where the API takes numpy values (review 36: numpy 2 names np.bool_ "bool", and its
# StringDType arrays of paths are of kind "T"; the unit tests run on numpy 1 only)
NUMPY2_CHECK = """
import sys
import numpy as np
from explain import Explainer, ExplainConfig
assert ExplainConfig(metrics=np.True_).metrics is True
assert ExplainConfig(probability_threshold=np.float32(0.3)).probability_threshold == 0.3
def detector(batch):
    return [np.array([[0, batch[index, ..., 0].mean() / 255, 0.1, 0.1, 0.6, 0.6]]) for index in range(len(batch))]
paths = np.array([sys.argv[1]], dtype=np.dtypes.StringDType())
(explained,) = Explainer(detector, task="detection", num_samples=24, num_segments=6)(paths)
total = explained.shap_values.sum(axis=1)
assert np.allclose(total, explained.predictions - explained.base_values, atol=1e-6), total
print("numpy 2 values: np.True_ and float32 settings, a StringDType array of paths")
"""


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _serve(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy", "serve", "--model", str(MODEL), "--port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    line = process.stdout.readline()
    if not line.startswith("ready"):
        process.kill()
        _fail(f"deploy serve did not start: {line}{process.stderr.read()[-2000:]}")
    return process


@click.command()
@click.option("--env", "env_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The explain-only virtualenv (the wheel with the explain extra).")
def main(env_dir: Path) -> None:
    """Check the explain-only install against a local endpoint; exit 1 naming what failed."""
    env_dir = env_dir.resolve()
    python, console = env_dir / "bin" / "python", env_dir / "bin" / "clearsight"
    checked = subprocess.run([str(python), "-c", ENVIRONMENT_CHECK], capture_output=True, text=True,
                             cwd=tempfile.gettempdir())  # not the checkout: the installed wheel
    if checked.returncode != 0:
        _fail(f"the explain-only environment is not what it should be:\n{checked.stderr[-2000:]}")
    click.echo(f"environment: {checked.stdout.strip()}", err=True)
    numpy2 = subprocess.run([str(python), "-c", NUMPY2_CHECK, str(IMAGE)], capture_output=True, text=True,
                            cwd=tempfile.gettempdir())
    if numpy2.returncode != 0:
        _fail(f"the API refused numpy 2's own values:\n{numpy2.stderr[-2000:]}")
    click.echo(numpy2.stdout.strip(), err=True)
    _check_serve_extra_is_named(console)
    port = free_port()
    server = _serve(port)
    try:
        with tempfile.TemporaryDirectory(prefix="clearsight-explain-check-") as scratch:
            out = Path(scratch) / "out"
            run = subprocess.run(
                [str(console), "explain", "--endpoint", f"http://127.0.0.1:{port}", "--task", "detection",
                 "--label-headers", "circle,square,triangle", "--num-samples", "64", "--quiet",
                 "--out", str(out), str(IMAGE)],
                capture_output=True, text=True, cwd=scratch, timeout=600)
            if run.returncode != 0:
                _fail(f"clearsight explain exited {run.returncode}:\n{run.stderr[-2000:]}")
            analysis = json.loads((out / "analysis.json").read_text())
            (image,) = analysis["images"]
            if not image["targets"]:
                _fail("nothing was explained: the endpoint's detections did not reach the explain client")
            with np.load(out / f"{image['stem']}_shap.npz") as arrays:
                values, predictions, base = arrays["shap_values"], arrays["predictions"], arrays["base_values"]
            if not np.allclose(values.sum(axis=1), predictions - base, atol=1e-6):
                _fail("the values do not sum to prediction - base value")
            missing = [name for name in image["files"] + ["report.html"] if not (out / name).is_file()]
            if missing:
                _fail(f"missing outputs: {', '.join(missing)}")
            labels = ", ".join(f"{target['label']} {target['score']:.2f}" for target in image["targets"])
            click.echo(f"explained {IMAGE.name} with the explain-only install: {labels}; "
                       f"{analysis['predictor']['requests']} requests to the local endpoint")
            _check_clarify_config(console, port, Path(scratch))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _check_serve_extra_is_named(console: Path) -> None:
    """`deploy serve` and `deploy package` without mxnet: exit 1 naming the extra and the Pythons it installs on
    (this environment is 3.12, where `pip install 'clearsight[serve]'` fails: review 26), no traceback."""
    model = REPO / "models" / "shapes-detector"
    with tempfile.TemporaryDirectory(prefix="clearsight-explain-check-") as scratch:
        for command in (["deploy", "serve", "--model", str(model), "--port", str(free_port())],
                        ["deploy", "package", "--model-dir", str(model), "--out", str(Path(scratch) / "m.tar.gz")]):
            run = subprocess.run([str(console), *command], capture_output=True, text=True, cwd=scratch, timeout=120)
            named = "the [serve] extra (mxnet 1.9) installs on Python 3.10 or 3.11, not on this Python 3."
            if run.returncode != 1 or named not in run.stderr or "Traceback" in run.stderr:
                _fail(f"clearsight {' '.join(command[:2])} without the serve extra exited {run.returncode} "
                      f"without naming it:\n{run.stderr[-2000:]}")


def _check_clarify_config(console: Path, port: int, scratch: Path) -> None:
    """`clearsight explain --clarify-config analysis_config.json --out DIR` alone, in the explain-only install."""
    config = {**sdk_analysis_config("OBJECT_DETECTION", ["circle", "square", "triangle"]),
              "dataset_uri": str(IMAGE.parent)}
    (scratch / "analysis_config.json").write_text(json.dumps(config))
    out = scratch / "clarify-out"
    run = subprocess.run([str(console), "explain", "--clarify-config", "analysis_config.json", "--out", str(out),
                          "--quiet"], capture_output=True, text=True, cwd=scratch, timeout=600,
                         env={**os.environ, "CLEARSIGHT_EXPLAIN_ENDPOINT_MAP": f"{ENDPOINT_NAME}=http://127.0.0.1:{port}"})
    if run.returncode != 0:
        _fail(f"clearsight explain --clarify-config exited {run.returncode}:\n{run.stderr[-2000:]}")
    if "not checked against Clarify's schema: the SageMaker SDK is not installed" not in run.stderr:
        _fail(f"the skipped schema check was not reported:\n{run.stderr[-2000:]}")
    images = json.loads((out / "analysis.json").read_text())["images"]
    click.echo(f"explained {len(images)} sample image(s) from a Clarify analysis_config.json alone")


if __name__ == "__main__":
    main()
