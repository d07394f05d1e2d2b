"""The clearsight command: one entry point over explain, deploy and the Processing job, with --version."""

from __future__ import annotations

import logging

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


def test_explain_usage_errors_keep_their_option(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "image.png")
    result = CliRunner().invoke(main, ["explain", "--endpoint", "http://127.0.0.1:9", "--task", "detection",
                                       "--out", str(tmp_path / "out"), "--num-samples", "2",
                                       str(tmp_path / "image.png")])
    assert result.exit_code == 2
    assert "Invalid value for '--num-samples': num_samples must be in [4, 1000000], got 2" in " ".join(
        result.output.split())
