"""The clearsight command: one entry point over explain, deploy and the Processing job, with --version."""

from __future__ import annotations

from click.testing import CliRunner

import clearsight
from clearsight.cli import main


def test_version_is_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"clearsight, version {clearsight.__version__}\n"


def test_subcommands_are_the_explain_and_deploy_commands_and_the_job():
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
