"""Entry point inside a SageMaker Processing container: explain this instance's images, one manifest per host.

SageMaker downloads this instance's share of the images (``ShardedByS3Key``) into
``/opt/ml/processing/input/images`` and uploads ``/opt/ml/processing/output`` to the job's
output prefix when the job ends. Every host writes ``manifest-<job>@<host>.jsonl`` (with
``--job-name``; ``manifest-<host>.jsonl`` without), so jobs that share an output prefix never
replace each other's manifests and a merge takes one job's; with one host the worker also
writes analysis.json and report.html, with several the command that started the job merges
them (``clearsight explain-job --wait``, or ``clearsight explain-merge``), as the worker's
last line says. Images that fail are
recorded in the manifest and do not fail the job (``--allow-partial``): the job's outputs
are uploaded, and the merge reports the failures.

    python -m explain.processing_worker [--input DIR] [--output DIR] [--resource-config FILE] \\
        [--job-name NAME] --endpoint sagemaker:NAME --task detection [other python -m explain options]
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import click

from .cli import main as explain_main
from .errors import ConfigError
from .manifest import manifest_name, run_manifest_tag

__all__ = ["main", "read_host"]

logger = logging.getLogger(__name__)

INPUT_DIR = "/opt/ml/processing/input/images"
OUTPUT_DIR = "/opt/ml/processing/output"
RESOURCE_CONFIG = "/opt/ml/config/resourceconfig.json"
_HOST_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def read_host(resource_config: Path) -> tuple[str, int]:
    """(this host's name, number of hosts) from SageMaker's resourceconfig.json; ('local', 1) without one."""
    try:
        config = json.loads(Path(resource_config).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "local", 1
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read {resource_config}: {error}") from None
    host = str(config.get("current_host", "local"))
    if not _HOST_NAME.match(host):
        raise click.ClickException(f"{resource_config}: current_host {host!r} is not a usable file name")
    return host, max(1, len(config.get("hosts", [host])))


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--input", "input_dir", type=click.Path(file_okay=False, path_type=Path), default=INPUT_DIR,
              envvar="CLEARSIGHT_PROCESSING_INPUT", show_envvar=True, help="This instance's images.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=OUTPUT_DIR,
              envvar="CLEARSIGHT_PROCESSING_OUTPUT", show_envvar=True,
              help="Where the explanations go (uploaded by SageMaker when the job ends).")
@click.option("--resource-config", type=click.Path(dir_okay=False, path_type=Path), default=RESOURCE_CONFIG,
              envvar="CLEARSIGHT_RESOURCE_CONFIG", show_envvar=True,
              help="SageMaker's host list; names this host's manifest.")
@click.option("--job-name", default=None, envvar="CLEARSIGHT_PROCESSING_JOB_NAME", show_envvar=True,
              help="The Processing job's name: the manifest is manifest-<job>@<host>.jsonl (without it, "
                   "manifest-<host>.jsonl).")
@click.pass_context
def main(ctx: click.Context, input_dir: Path, output_dir: Path, resource_config: Path, job_name: str | None) -> None:
    """Explain every image under --input into --output; other options go to python -m explain."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host, hosts = read_host(resource_config)
    try:
        tag = run_manifest_tag(job_name, host) if job_name is not None else host
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, param_hint="'--job-name'") from None
    if input_dir.exists() and not input_dir.is_dir():
        raise click.BadParameter(f"{input_dir} is not a directory", ctx, ctx.command.params[0])
    if not input_dir.is_dir() or not any(input_dir.rglob("*")):
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / manifest_name(tag)).touch()  # an empty manifest: the merge sees that this host ended
        click.echo(f"{host}: no images in {input_dir} (more instances than objects?); nothing to do", err=True)
        return
    args = list(ctx.args) + ["--out", str(output_dir), "--manifest-tag", tag, "--quiet", "--allow-partial"]
    if hosts > 1:
        merge = "clearsight explain-merge --out <the job's --out>" + (f" --job-name {job_name}" if job_name else "")
        args += ["--no-report", "--merged-by", "the report of all hosts is merged when the job has ended: "
                 f"`clearsight explain-job --wait` does it, or `{merge}`"]
    click.echo(f"{host} ({hosts} host(s) in the job): explaining {input_dir} into {output_dir}", err=True)
    explain_main.main(args=args + [str(input_dir)], prog_name="python -m explain.processing_worker")


if __name__ == "__main__":
    main(prog_name="python -m explain.processing_worker")
