"""The ``clearsight`` command: ``explain``, ``deploy``, and explanations at scale on SageMaker Processing.

The top layer: the one module that puts explain/ and deploy/ under one command, and the
``explain-job`` / ``explain-merge`` commands that run explain's code in a Processing job
(``clearsight.processing``) on deploy's AWS plumbing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import click
from click.core import ParameterSource

from deploy.aws_cli import (
    aws_options,
    click_failure,
    clients_for,
    progress_printer,
    resolve_region,
    usage_error,
)
from deploy.cli import main as deploy_main
from deploy.errors import DeployConfigError, DeployError
from explain.clarify_config import read_clarify_config
from explain.cli import ENV_PREFIX as EXPLAIN_ENV_PREFIX
from explain.cli import VERBOSE_META, configure_logging, kept_files_lines
from explain.cli import main as explain_main
from explain.config import BUILTIN_BASELINES, ExplainConfig
from explain.errors import ConfigError
from explain.terminal import keep_standard_streams_open, printable
from serving.contract import TASKS

from . import __version__
from .processing import (
    DEFAULT_INSTANCE_TYPE,
    JOB_SET_OPTIONS,
    ExplainJobConfig,
    check_s3_object,
    default_job_name,
    merge_job_outputs,
    start_explain_job,
    wait_for_job,
    why_the_job_sets,
)

__all__ = ["main", "run"]

EXPLAIN_OPTIONS_METAVAR = "-- EXPLAIN OPTIONS"  # explain-job's pass-through options, in usage and in errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="clearsight")
@click.option("-v", "--verbose", count=True, show_envvar=True, envvar="CLEARSIGHT_VERBOSE",
              help="Log more on stderr, for every command: -v INFO (retries, throttling, AWS steps), -vv DEBUG.")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Serve image models on SageMaker's MXNet stack, deploy them, and explain their predictions.

    `clearsight explain` explains images against an endpoint or a model (Kernel SHAP over
    superpixels); `clearsight deploy` packages, serves locally and deploys to SageMaker;
    `clearsight explain-job` explains an S3 prefix of images on SageMaker Processing.
    """
    # The SageMaker SDK logs where it looked for its config file at INFO on stdout; that is noise here.
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    if verbose:  # subcommands add their own -v to this (ctx.meta is shared with them)
        ctx.meta[VERBOSE_META] = verbose
        configure_logging(verbose)


main.add_command(explain_main, name="explain")
main.add_command(deploy_main, name="deploy")


@main.command(name="explain-job", context_settings={"ignore_unknown_options": True})
@click.option("--images", required=True, show_envvar=True, envvar="CLEARSIGHT_JOB_IMAGES",
              help="s3://BUCKET/PREFIX of the images (jpg/jpeg/png), split over the instances by key.")
@click.option("--endpoint", "endpoint_name", required=True, show_envvar=True, envvar="CLEARSIGHT_ENDPOINT_NAME",
              help="Name of the SageMaker endpoint the job's workers call.")
@click.option("--out", "out_url", required=True, show_envvar=True, envvar="CLEARSIGHT_JOB_OUT",
              help="s3://BUCKET/PREFIX for the explanations, analysis.json and report.html; outside --images "
                   "(neither may hold the other).")
@click.option("--task", type=click.Choice(TASKS), default="detection",
              show_default=True, show_envvar=True, envvar="CLEARSIGHT_TASK", help="What the model predicts.")
@click.option("--instance-count", default=1, show_default=True, type=int, show_envvar=True,
              envvar="CLEARSIGHT_JOB_INSTANCE_COUNT", help="Processing instances (each explains its share).")
@click.option("--instance-type", default=DEFAULT_INSTANCE_TYPE, show_default=True, show_envvar=True,
              envvar="CLEARSIGHT_JOB_INSTANCE_TYPE", help="Processing instance type (ml.*).")
@click.option("--role", show_envvar=True, envvar="SAGEMAKER_ROLE", default=None,
              help="IAM role ARN the job runs as (S3 read/write, sagemaker:InvokeEndpoint). Required.")
@click.option("--job-name", default=None, show_envvar=True, envvar="CLEARSIGHT_JOB_NAME",
              help="Processing job name. Default: clearsight-explain-<UTC time>.")
@click.option("--image-uri", default=None, show_envvar=True, envvar="CLEARSIGHT_JOB_IMAGE_URI",
              help="Container image of the job: x86_64 Linux with CPython 3.11 (venv), bash, tar, sha256sum. "
                   "Default: AWS's PyTorch 2.3 CPU training image (Python 3.11). The job installs "
                   "this project's wheel and its pinned dependencies offline, from files the command uploads.")
@click.option("--volume-size", default=30, show_default=True, type=int, show_envvar=True,
              envvar="CLEARSIGHT_JOB_VOLUME_GB", help="Storage per instance in GB (images and outputs).")
@click.option("--max-runtime", default=86_400, show_default=True, type=int, show_envvar=True,
              envvar="CLEARSIGHT_JOB_MAX_RUNTIME", help="Seconds before SageMaker stops the job.")
@click.option("--wait/--no-wait", default=True, show_default=True, show_envvar=True, envvar="CLEARSIGHT_WAIT",
              help="Wait for the job, then merge the instances' outputs into one report.")
@click.option("--poll-seconds", default=30.0, show_default=True, type=float, show_envvar=True,
              envvar="CLEARSIGHT_POLL_SECONDS", help="Seconds between status checks while waiting.")
@click.option("--allow-partial", is_flag=True, default=False,
              help="Exit 0 when some images failed but others were explained (the merged analysis.json "
                   "lists the failures), or when some hosts wrote no manifest.  [default: exit 1 then]")
@aws_options
@click.argument("explain_args", nargs=-1, type=click.UNPROCESSED, metavar=f"[{EXPLAIN_OPTIONS_METAVAR}]")
@click.pass_context
def explain_job(ctx: click.Context, images: str, endpoint_name: str, out_url: str, task: str,
                instance_count: int, instance_type: str, role: str | None, job_name: str | None,
                image_uri: str | None, volume_size: int, max_runtime: int, wait: bool,
                poll_seconds: float, allow_partial: bool, region: str | None, endpoint_url: str | None,
                explain_args: tuple[str, ...]) -> None:
    """Explain the images under --images with a SageMaker Processing job on N instances.

    Each instance installs this project's wheel and its pinned dependencies offline (both
    uploaded to --out, checked by sha256) and runs `python -m explain.processing_worker` on its
    share of the images (ShardedByS3Key), calling endpoint --endpoint; outputs land in --out.
    With --wait the command then merges the instances' manifests into one analysis.json and
    report.html in --out; images that failed are listed, and the exit status is 1 unless
    --allow-partial. Options after `--` go to `clearsight explain` (e.g. -- --num-samples 500
    --label-headers a,b; no IMAGE arguments: the images are --images); CLEARSIGHT_EXPLAIN_<OPTION>
    variables of this shell go to the job as options too (not CLEARSIGHT_EXPLAIN_ENDPOINT_MAP:
    the job calls --endpoint). The job is billed per instance-second until it ends.
    """
    if not role:
        raise click.MissingParameter(
            "an IAM role ARN for the job: give --role ARN or set SAGEMAKER_ROLE",
            param_hint="'--role'", param_type="option")
    explain_settings, explain_args = _check_explain_args(task, explain_args)
    try:
        config = ExplainJobConfig(
            job_name=job_name or default_job_name(), images_url=images, endpoint_name=endpoint_name,
            out_url=out_url, role=role, region=resolve_region(region), task=task, instance_count=instance_count,
            instance_type=instance_type, volume_size_gb=volume_size, max_runtime_seconds=max_runtime,
            image_uri=image_uri, explain_args=tuple(explain_args), poll_seconds=poll_seconds)
    except DeployConfigError as error:
        if error.field == "explain_args":
            raise _bad_explain_options(f"{error.value!r}: {error.allowed}") from None
        error.option = _JOB_OPTION_OF_FIELD.get(error.field, error.option)  # review 43: '--volume-size-gb'
        raise usage_error(error) from None
    started = time.monotonic()
    say = progress_printer(started)
    clients = clients_for(ctx, config.region, endpoint_url)
    try:
        if explain_settings["baseline"].startswith("s3://"):  # checked before anything is uploaded or started
            check_s3_object(explain_settings["baseline"], clients, "--baseline image")
        start_explain_job(config, clients, progress=say)
        if not wait:
            click.echo(f"processing job {config.job_name} started; merge its outputs when it ends with "
                       f"`{_merge_command(config)}`", err=True)
            click.echo(config.job_name)
            return
        try:
            wait_for_job(config.job_name, clients, config.poll_seconds, progress=say)
        except KeyboardInterrupt:
            raise click.ClickException(
                f"stopped waiting; processing job {config.job_name} goes on (stop it with `aws sagemaker "
                f"stop-processing-job --processing-job-name {config.job_name}`); when it has ended, merge "
                f"with `{_merge_command(config)}`") from None
        summary = merge_job_outputs(config.out_url, clients, progress=say, job_name=config.job_name)
    except DeployError as error:
        raise click_failure(error) from None
    click.echo(f"{config.out_url.rstrip('/')}/report.html")
    _check_failures(summary, allow_partial)


@main.command(name="explain-merge")
@click.option("--out", "out_url", required=True, show_envvar=True, envvar="CLEARSIGHT_JOB_OUT",
              help="s3://BUCKET/PREFIX an explain-job wrote to.")
@click.option("--job-name", default=None, show_envvar=True, envvar="CLEARSIGHT_JOB_NAME",
              help="The job whose outputs to merge (its manifests are manifest-<job>@<host>.jsonl). "
                   "Default: the job whose manifests were written last; the other jobs' are left out and named.")
@click.option("--allow-partial", is_flag=True, default=False,
              help="Exit 0 when some images failed but others were explained, or when the job is not "
                   "Completed or some of its hosts wrote no manifest (the merge says which).  [default: exit 1 "
                   "then]")
@aws_options
@click.pass_context
def explain_merge(ctx: click.Context, out_url: str, job_name: str | None, allow_partial: bool, region: str | None,
                  endpoint_url: str | None) -> None:
    """Merge one job's manifests under --out into one analysis.json and report.html there.

    Jobs that wrote to the same --out keep their own manifests; only --job-name's (default:
    the latest job's) are merged, and analysis.json and the report name the other runs whose
    outputs are still there (totals.other_runs) and, for an image that failed in this job, the
    files an earlier job left under its stem. The job is looked up in SageMaker
    (DescribeProcessingJob): a job that is not Completed, hosts algo-1..algo-N (N: its
    InstanceCount) without a manifest, or files a stopped worker of the job left in .staging-*
    folders (images missing from the report) are warned about, named in analysis.json
    (totals.incomplete) and at the top of report.html, and exit 1 unless --allow-partial.
    """
    if not out_url.startswith("s3://"):
        raise click.BadParameter(f"{out_url!r}: an S3 location s3://BUCKET/PREFIX", param_hint="'--out'")
    region = resolve_region(region)
    try:
        summary = merge_job_outputs(out_url, clients_for(ctx, region, endpoint_url),
                                    progress=progress_printer(time.monotonic()), job_name=job_name)
    except DeployError as error:
        raise click_failure(error) from None
    click.echo(f"{out_url.rstrip('/')}/report.html")
    _check_failures(summary, allow_partial)


def _merge_command(config: ExplainJobConfig) -> str:
    """The `clearsight explain-merge` command of ``config``'s job, quoted to be pasted into a shell."""
    return shlex.join(["clearsight", "explain-merge", "--out", config.out_url, "--job-name", config.job_name])


def _check_failures(summary: dict, allow_partial: bool) -> None:
    """After a merge: name the images that failed on stderr; exit 1 for them, or when the job is not
    Completed or some of its hosts' outputs are missing (``job_check``), unless ``allow_partial``."""
    failed = summary["totals"].get("failed") or []
    if failed:
        click.echo(f"{len(failed)} image(s) failed (all in analysis.json, totals.failed):", err=True)
    for item in failed[:5]:
        click.echo(f"  {printable(item['key'])}: {item['kind']}: {printable(item['reason'])}", err=True)
        for line in kept_files_lines(item):
            click.echo(line, err=True)
    problems = summary.get("job_check", {}).get("problems") or []
    if allow_partial or not (failed or problems):
        return
    reasons = [f"{len(failed)} image(s) failed; the others were explained"] if failed else []
    reasons += [f"the report is of part of the job: {problem}" for problem in problems]
    raise click.ClickException(". ".join(reasons) + ". Add --allow-partial to exit 0 on such runs")


def _check_explain_args(task: str, explain_args: tuple[str, ...]) -> tuple[dict, tuple[str, ...]]:
    """Parse the pass-through options as `python -m explain` would; a bad one is a usage error here.

    Returns the explain settings they give (ExplainConfig's fields but task, baseline as given)
    and the job's explain options: ``explain_args`` then, as explicit options, every setting
    taken from a CLEARSIGHT_EXPLAIN_<OPTION> variable of this shell, since the job's container
    has none of them. CLEARSIGHT_EXPLAIN_ENDPOINT_MAP (the job explains --endpoint) and the
    variables of options the job sets itself are left out, with a warning naming each.
    """
    names = {item.name for item in dataclasses.fields(ExplainConfig)} - {"task"}
    images = _image_arguments(explain_args)
    if images:  # each instance of the job would fail on them ("Path ... does not exist") after its start
        raise _bad_explain_options(
            f"{', '.join(map(printable, images))}: IMAGE arguments are not passed to the job: its images are the "
            "objects under --images; give only explain options after '--'")
    with tempfile.TemporaryDirectory(prefix="clearsight-check-") as folder:
        placeholder = Path(folder) / "placeholder.png"
        placeholder.write_bytes(b"")
        args = ["--endpoint", "sagemaker:check", "--task", task, "--out", folder, *explain_args,
                str(placeholder)]
        try:
            with explain_main.make_context("explain", args) as explain_ctx:
                settings = {name: value for name, value in explain_ctx.params.items() if name in names}
                from_environment = _settings_from_environment(explain_ctx)
                local_files = _local_files(explain_ctx, explain_args, from_environment)
        except click.UsageError as error:
            if getattr(error, "param_hint", None) == f"'{EXPLAIN_OPTIONS_METAVAR}'":  # ours already (_job_sets)
                raise
            raise _bad_explain_options(error.format_message()) from None
        if local_files:
            raise _bad_explain_options(
                f"{'; '.join(local_files)}: the processing job receives the images, its code and its wheelhouse, "
                "not files of this machine")
        s3_baseline = settings["baseline"].startswith("s3://")  # the job's workers read it, with the job's role
        try:
            ExplainConfig(task=task, **{**settings, **({"baseline": "noise"} if s3_baseline else {})})
        except ConfigError as error:
            raise _bad_explain_options(str(error)) from None
    passed = tuple(arg for _, _, options in from_environment.values() for arg in options)
    return settings, tuple(explain_args) + passed


def _bad_explain_options(message: str) -> click.BadParameter:
    """A usage error about the explain options (after `--`, or from CLEARSIGHT_EXPLAIN_* variables), every one
    named as the usage line names them."""
    return click.BadParameter(message, param_hint=f"'{EXPLAIN_OPTIONS_METAVAR}'")


def _image_arguments(explain_args: tuple[str, ...]) -> list[str]:
    """The IMAGE arguments among the pass-through options, found by explain's parser alone: no callback runs,
    so an s3:// one is not listed and a path need not exist. An unusable option: none (the full parse names it)."""
    try:
        parsed, _, _ = explain_main.make_parser(click.Context(explain_main, info_name="explain")).parse_args(
            list(explain_args))
    except click.UsageError:
        return []
    images = parsed.get("images")
    return list(images) if isinstance(images, (list, tuple)) else []  # not given: click's UNSET sentinel


def _settings_from_environment(explain_ctx: click.Context) -> dict[str, tuple[str, str, list[str]]]:
    """The explain options set by environment variables: name -> (variable, its value, the same as options).

    CLEARSIGHT_EXPLAIN_ENDPOINT_MAP and the variables of options the job sets are left out, each
    with a warning on stderr (they would otherwise be taken for options the user gave).
    """
    found = {}
    for param in explain_ctx.command.params:
        if not isinstance(param, click.Option) or not param.name:
            continue
        option = next(name for name in param.opts if name.startswith("--"))
        variable = _variable_of(param)
        raw = os.environ.get(variable, "")
        if option in _GIVEN_BY_THE_JOB and raw.strip():  # on the check's command line: click never read the variable
            _job_sets(option, variable, raw, explain_ctx.params[param.name])
            continue
        if explain_ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
            continue
        if param.name == "endpoint_map":
            click.echo(f"Warning: {variable} is set but the job does not use it: its workers call SageMaker "
                       "endpoint --endpoint", err=True)
            continue
        if option in JOB_SET_OPTIONS:
            click.echo(f"Warning: {variable} is set but not passed to the job ({option}): {why_the_job_sets(option)}",
                       err=True)
            continue
        value = explain_ctx.params[param.name]
        if param.count:
            options = [option] * int(value or 0)
        elif param.is_flag:
            options = [option] if value else []
        elif param.multiple:
            options = [item for part in param.split_envvar_value(raw) for item in (option, part)]
        else:
            options = [option, raw]
        found[param.name] = (variable, raw, options)
    return found


# ExplainJobConfig's fields that explain-job's options spell otherwise
_JOB_OPTION_OF_FIELD = {"volume_size_gb": "--volume-size", "max_runtime_seconds": "--max-runtime"}


# the options _check_explain_args gives the check itself: explain-job's own --endpoint, --task and --out
_GIVEN_BY_THE_JOB = ("--endpoint", "--task", "--out")


def _job_sets(option: str, variable: str, raw: str, value: str) -> None:
    """A CLEARSIGHT_EXPLAIN_ variable of an option the job gives itself: a usage error when it names another task
    than the job's (a shell set up for a classifier would start a job explaining detections), else a warning.
    A blank task is taken as unset."""
    task = raw.strip().lower()
    if option == "--task" and task and task not in TASKS:
        raise _bad_explain_options(f"{variable}={raw!r} is not a task ({' or '.join(TASKS)}); the job explains "
                                   f"--task {value}: unset {variable} or set it to {value}")
    if option == "--task" and task and task != str(value).lower():
        raise _bad_explain_options(f"{variable}={raw}, but the job explains --task {value}: give explain-job "
                                   f"--task {task} (or set CLEARSIGHT_TASK), or unset {variable}")
    if option != "--task":
        click.echo(f"Warning: {variable} is set but not passed to the job: the job's {option} is explain-job's",
                   err=True)


def _variable_of(param: click.Option) -> str:
    """The environment variable an explain option's value came from (CLEARSIGHT_EXPLAIN_<NAME>, or its old name)."""
    name = param.envvar if isinstance(param.envvar, str) else f"{EXPLAIN_ENV_PREFIX}_{param.name.upper()}"
    old = getattr(param, "deprecated_envvar", None) or f"EXPLAIN_{param.name.upper()}"
    return name if os.environ.get(name, "").strip() or not os.environ.get(old) else old


def _local_files(explain_ctx: click.Context, explain_args: tuple[str, ...],
                 from_environment: dict[str, tuple[str, str, list[str]]]) -> list[str]:
    """What in the parsed pass-through options names a file of this machine (each as a reason,
    naming the environment variable where the value came from one)."""
    params = explain_ctx.params

    def given(name: str, option: str) -> str:
        return f"{from_environment[name][0]}={from_environment[name][1]}" if name in from_environment else option

    found = []
    if params.get("clarify_config"):
        found.append(f"{given('clarify_config', '--clarify-config')} reads a local file (give its settings as "
                     f"options{_as_options(params['clarify_config'])})")
    if params.get("endpoint_map") and (  # the variable is left out of the job, with a warning
            explain_ctx.get_parameter_source("endpoint_map") is not ParameterSource.ENVIRONMENT):
        found.append("--endpoint-map names local models or URLs (the job explains --endpoint)")
    baseline = params.get("baseline")
    if baseline not in BUILTIN_BASELINES and not str(baseline).startswith("s3://"):
        found.append(f"{given('baseline', f'--baseline {baseline}')} is a local image (use "
                     f"{', '.join(BUILTIN_BASELINES)} or an s3://BUCKET/KEY image the job's role can read)")
    values = [arg.split("=", 1)[1] for arg in explain_args if arg.startswith("--label-headers=")]
    values += [explain_args[index + 1] for index, arg in enumerate(explain_args[:-1]) if arg == "--label-headers"]
    values += [from_environment["label_headers"][1]] if "label_headers" in from_environment else []
    if any(Path(value).is_file() for value in values):
        found.append(f"{given('label_headers', '--label-headers')} reads a local file (give the names as a,b,c)")
    return found


def _as_options(clarify_config: str) -> str:
    """': explain-job --task T -- --num-samples N ...', a Clarify config's settings as the job takes them ('' when
    the file cannot be read: its own error was already reported by the check)."""
    try:
        options = read_clarify_config(clarify_config, validate=False).options
    except ConfigError:
        return ""
    def travels(name, value) -> bool:  # as the job takes it: no local file, no class name a comma would split
        if name == "baseline":
            return value in BUILTIN_BASELINES or str(value).startswith("s3://")
        return name != "label_headers" or not any("," in item for item in value)

    parts = [f"--{name.replace('_', '-')} {shlex.quote(','.join(value) if isinstance(value, tuple) else str(value))}"
             for name, value in options.items() if name not in ("endpoint", "task") and travels(name, value)]
    task = f"explain-job --task {options['task']}" if "task" in options else "explain-job"
    return f": {task} ... -- {' '.join(parts)}" if parts else ""


def run() -> None:
    """Console-script entry point: DeployError -> one line on stderr and exit 1 (click handles the rest)."""
    keep_standard_streams_open()  # started with 2>&- or >&-: a socket or file must not become stdout or stderr
    try:
        main.main(prog_name="clearsight", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except DeployError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
