"""The clearsight command: one entry point over explain, deploy and the Processing job, with --version."""

from __future__ import annotations

import logging
import os

import pytest
from click.testing import CliRunner

import clearsight
from clearsight.cli import main
from tests.fake_endpoint import FakeEndpoint


def test_version_is_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"clearsight, version {clearsight.__version__}\n"


def test_every_command_reports_the_one_project_version():
    from deploy.cli import main as deploy_main
    from explain.cli import main as explain_main

    version = clearsight.__version__
    assert CliRunner().invoke(main, ["explain", "--version"]).output == f"clearsight explain, version {version}\n"
    assert CliRunner().invoke(main, ["deploy", "--version"]).output == f"clearsight deploy, version {version}\n"
    assert CliRunner().invoke(explain_main, ["-V"]).output == f"clearsight explain, version {version}\n"
    assert CliRunner().invoke(deploy_main, ["-V"]).output == f"clearsight deploy, version {version}\n"


@pytest.fixture()
def root_logging():
    """Restore the root logger's level after a test that configures logging as an entry point does."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_clearsight_verbose_reaches_explain(verbose, tmp_path, caplog, root_logging):
    from PIL import Image

    Image.new("RGB", (24, 24), (200, 90, 40)).save(tmp_path / "image.png")
    with FakeEndpoint("detection") as endpoint:
        endpoint.fail_first = 1
        result = CliRunner().invoke(main, [*verbose, "explain", "--endpoint", endpoint.url, "--task", "detection",
                                           "--out", str(tmp_path / "out"), "--num-samples", "8", "--num-segments",
                                           "2", "--quiet", str(tmp_path / "image.png")])
    assert result.exit_code == 0, result.output
    retries = [record for record in caplog.records if record.getMessage().startswith("retrying in ")]
    assert len(retries) == (1 if verbose else 0)

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert set(main.commands) == {"explain", "deploy", "explain-job", "explain-merge"}
    deploy = CliRunner().invoke(main, ["deploy", "--help"])
    assert deploy.exit_code == 0 and {"package", "serve", "sagemaker"} <= set(main.commands["deploy"].commands)


def test_explain_job_help_names_the_console_script():
    result = CliRunner().invoke(main, ["explain-job", "--help"])
    assert result.exit_code == 0, result.output
    assert "Options after `--` go to `clearsight explain`" in " ".join(result.output.split())
    assert "python -m explain`" not in result.output


def test_explain_usage_errors_keep_their_option(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "image.png")
    result = CliRunner().invoke(main, ["explain", "--endpoint", "http://127.0.0.1:9", "--task", "detection",
                                       "--out", str(tmp_path / "out"), "--num-samples", "2",
                                       str(tmp_path / "image.png")])
    assert result.exit_code == 2
    assert "Invalid value for '--num-samples': num_samples must be in [4, 1000000], got 2" in " ".join(
        result.output.split())


@pytest.mark.parametrize("command, absent, message", [
    (["deploy", "serve", "--model", "models/shapes-detector"], "sagemaker_inference",
     "Error: deploy serve (multi-model-server, SageMaker's MXNet toolkit, mxnet) needs sagemaker_inference, "
     "not installed in this environment ({python}): pip install 'clearsight[serve]' (in a clearsight "
     "checkout: '.[serve]') and a Java runtime\n"),
    (["deploy", "package", "--model-dir", "models/shapes-detector", "--out", "{tmp}/model.tar.gz"], "mxnet",
     "Error: the check inference (the packed handler run once) needs mxnet, not installed in this environment "
     "({python}): pip install 'clearsight[serve]' (in a clearsight checkout: '.[serve]'), or skip the "
     "check with --no-check\n"),
    (["deploy", "package", "--zoo", "yolo3_darknet53_coco", "--out", "{tmp}/model.tar.gz"], "gluoncv",
     "Error: --zoo needs gluoncv, not installed in this environment ({python}): pip install 'clearsight[zoo]' (in a "
     "clearsight checkout: '.[zoo]')\n"),
])
def test_deploy_without_its_extra_names_the_extra_to_install(monkeypatch, tmp_path, command, absent, message):
    """The explain-only install has no mxnet, toolkits or MMS: a message, not a ModuleNotFoundError traceback."""
    import sys

    monkeypatch.setitem(sys.modules, absent, None)  # import and find_spec now fail as if never installed
    result = CliRunner().invoke(main, [part.format(tmp=tmp_path) for part in command])
    assert result.exit_code == 1
    assert result.output == message.format(python=sys.executable)
    assert not (tmp_path / "model.tar.gz").exists()


@pytest.mark.parametrize("command, absent, message", [
    (["deploy", "serve", "--model", "models/shapes-detector"], "mms",
     "Error: deploy serve (multi-model-server, SageMaker's MXNet toolkit, mxnet) needs mms, not installed in this "
     "environment ({python}): the [serve] extra (mxnet 1.9) installs on Python 3.10 or 3.11, not on this Python 3.12: "
     "pip install 'clearsight[serve]' in a venv of one of those (with a Java runtime); from here, clearsight explain "
     "works against an endpoint over HTTP (deploy serve in that venv, or deploy sagemaker)\n"),
    (["deploy", "package", "--model-dir", "models/shapes-detector", "--out", "{tmp}/model.tar.gz"], "mxnet",
     "Error: the check inference (the packed handler run once) needs mxnet, not installed in this environment "
     "({python}): the [serve] extra (mxnet 1.9) installs on Python 3.10 or 3.11, not on this Python 3.12: pip install "
     "'clearsight[serve]' in a venv of one of those, or skip the check with --no-check\n"),
    (["deploy", "package", "--zoo", "yolo3_darknet53_coco", "--out", "{tmp}/model.tar.gz"], "gluoncv",
     "Error: --zoo needs gluoncv, not installed in this environment ({python}): the [zoo] extra (mxnet 1.9) installs "
     "on Python 3.10 or 3.11, not on this Python 3.12: pip install 'clearsight[zoo]' in a venv of one of those\n"),
])
def test_on_python_3_12_a_missing_extra_names_the_pythons_it_installs_on(monkeypatch, tmp_path, command, absent,
                                                                         message):
    """Review 26, finding 6: there `pip install 'clearsight[serve]'` fails building numpy < 1.24 (no distutils)."""
    import sys

    monkeypatch.setitem(sys.modules, absent, None)
    monkeypatch.setattr(sys, "version_info", (3, 12, 3, "final", 0))
    result = CliRunner().invoke(main, [part.format(tmp=tmp_path) for part in command])
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.output == message.format(python=sys.executable)


def test_aws_commands_without_the_sagemaker_sdk_name_the_aws_extra(monkeypatch):
    """`up` and `explain-job` look up AWS's images with the SDK: without it, say which extra adds it."""
    import sys

    from clearsight.processing import default_image_uri
    from deploy.sagemaker_deploy import resolve_image_uri
    from deploy.sagemaker_invoke import make_predictor

    monkeypatch.setitem(sys.modules, "sagemaker", None)  # as in the explain-only install
    for call, needed_for in ((lambda: resolve_image_uri("us-east-1", "ml.g4dn.xlarge"),
                              "finding the MXNet inference image"),
                             (lambda: default_image_uri("us-east-1"), "finding the Processing job's image"),
                             (lambda: make_predictor("my-endpoint", None), "deploy sagemaker invoke")):
        with pytest.raises(ImportError) as raised:
            call()
        assert str(raised.value) == (f"{needed_for} needs the SageMaker Python SDK, not installed in this "
                                     "environment: pip install 'clearsight[aws]' (in a clearsight checkout: '.[aws]')")



@pytest.mark.parametrize("given, expected", [(None, "1"), ("", ""), ("0", "0")])
def test_the_sdk_v2_notice_is_off_unless_the_environment_sets_it(monkeypatch, given, expected):
    """sagemaker >= 2.257 printed its advice to move to SDK v3 twice (a warning and a log line) at every
    explain-job; clearsight needs v2 (v3 has no MXNet). The SDK's own variable turns it off, unless set."""
    from deploy.aws_clients import require_sagemaker_sdk
    from explain.clarify_schema import check_against_sdk_schema
    from explain.errors import ConfigError

    def environment_as_given():
        monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "recorded")  # restored after the test, set or not
        if given is None:
            monkeypatch.delenv("SAGEMAKER_SUPPRESS_V2_WARNING", raising=False)
        else:
            monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", given)

    environment_as_given()
    require_sagemaker_sdk("explain-job")  # before each import of the SDK in deploy/ and clearsight/
    assert os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] == expected
    environment_as_given()
    with pytest.raises(ConfigError):  # explain/'s import of the SDK, for Clarify's schema (which refuses {})
        check_against_sdk_schema({})
    assert os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] == expected
