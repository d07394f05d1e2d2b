"""``python -m deploy``: package models, serve them locally on the real SageMaker stack."""
import functools
import importlib.util
import logging
import signal
import sys
import time

import click

from serving import __version__

from .errors import DeployError
from .gate import DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_DEADLINE
from .sagemaker_cli import sagemaker
from .stop_signals import Stopped, ignore_stop_signals, stop_on_signals

TASKS = ("detection", "classification")
# What the packed handler and the local endpoint import (the serve extra), and --zoo (the zoo extra)
HANDLER_MODULES = ("mxnet",)
SERVE_MODULES = ("mxnet", "sagemaker_inference", "sagemaker_mxnet_serving_container", "mms")
ZOO_MODULES = ("mxnet", "gluoncv")
# every option of package and serve can also be set as CLEARSIGHT_<COMMAND>_<OPTION>, as --help shows
option = functools.partial(click.option, show_envvar=True)


def _require_modules(modules, needed_for, extra, alternative="", on_newer_python=None):
    """Raise a ClickException naming the pip extra when one of ``modules`` cannot be imported here.

    ``alternative`` ends the message; ``on_newer_python`` (``alternative`` when None) ends it instead on a
    Python that the extra cannot be installed on.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    if on_newer_python is not None and not _extra_installs_on(sys.version_info):
        alternative = on_newer_python
    raise click.ClickException("%s needs %s, not installed in this environment (%s)%s%s" % (
        needed_for, ", ".join(missing), sys.executable, _install_hint(extra, sys.version_info), alternative))


# The serve and zoo extras bring mxnet 1.9 and numpy < 1.24, which install on these Pythons only.
MXNET_PYTHONS = ((3, 10), (3, 11))


def _extra_installs_on(python_version):
    """Whether the serve and zoo extras can be installed on ``python_version`` (sys.version_info or a tuple)."""
    return tuple(python_version[:2]) <= MXNET_PYTHONS[-1]


def _install_hint(extra, python_version):
    """How to get the pip extra ``extra`` (serve, zoo) on ``python_version``: the middle of a "needs ..." message.

    On Python 3.12 and later ``pip install 'clearsight[serve]'`` fails (numpy < 1.24 does not build
    there): the hint names the Pythons it installs on instead.
    """
    if _extra_installs_on(python_version):
        return ": pip install 'clearsight[%s]' (in a clearsight checkout: '.[%s]')" % (extra, extra)
    return (": the [%s] extra (mxnet 1.9) installs on Python %s, not on this Python %d.%d: pip install "
            "'clearsight[%s]' in a venv of one of those"
            % (extra, " or ".join("%d.%d" % pair for pair in MXNET_PYTHONS), python_version[0], python_version[1],
               extra))


def _split_classes(ctx, param, value):
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise click.BadParameter("give class names separated by commas, e.g. person,car; got %r" % value)
    if len(set(names)) != len(names):
        raise click.BadParameter("class names must be unique; got %r" % value)
    return names


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "CLEARSIGHT"})
@option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.version_option(__version__, "-V", "--version", prog_name="clearsight deploy")
def main(verbose):
    """Package GluonCV models, serve them locally, deploy them to SageMaker."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# What each source of `package` reads of its options; the others would be silently dropped.
_PACKAGE_OPTIONS_USED = {
    "--zoo": ("classes", "score_threshold", "top_k", "pretrained"),
    "--symbol/--params": ("classes", "task", "short_side", "max_size", "center_crop", "score_threshold", "top_k"),
    "--model-dir": (),
}
_PACKAGE_SETTINGS = ("classes", "task", "short_side", "max_size", "center_crop", "score_threshold", "top_k",
                     "pretrained")
_WHY_UNUSED = {
    "--zoo": "a --zoo model gets the zoo's own task and preprocessing",
    "--symbol/--params": "--pretrained/--no-pretrained is for --zoo downloads",
    "--model-dir": "a --model-dir model keeps its model.json: edit that file, or package the weights with "
                   "--symbol/--params and these options",
}


def _refuse_unused_package_options(ctx: click.Context, source: str) -> None:
    """A usage error naming each option typed on the command line that ``source`` does not read (review 43:
    --model-dir took --classes, --task, --score-threshold ... and wrote its own model.json); a variable of such
    an option (set in the shell for other packages) gets a warning and is not used."""
    unused = [name for name in _PACKAGE_SETTINGS if name not in _PACKAGE_OPTIONS_USED[source]]
    names = {param.name: param.opts[0] if param.name != "pretrained" else "--pretrained/--no-pretrained"
             for param in ctx.command.params}
    for name in unused:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.ENVIRONMENT:
            click.echo("Warning: %s_%s is set but not used: %s does not read %s (%s)" % (
                ctx.auto_envvar_prefix, name.upper(), source, names[name], _WHY_UNUSED[source]), err=True)
    typed = [name for name in unused if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if typed:
        raise click.UsageError("%s: not used with %s (%s)" % (", ".join(names[name] for name in typed), source,
                                                              _WHY_UNUSED[source]))


@main.command()
@option("--zoo", "zoo_name", metavar="NAME", help="GluonCV model-zoo name, e.g. yolo3_darknet53_coco.")
@option("--symbol", "symbol_file", type=click.Path(exists=True, dir_okay=False),
              help="Exported -symbol.json (with --params).")
@option("--params", "params_file", type=click.Path(exists=True, dir_okay=False),
              help="Exported .params (with --symbol).")
@option("--model-dir", type=click.Path(exists=True, file_okay=False),
              help="A directory with exported weights and a model.json (e.g. models/shapes-detector).")
@option("--classes", callback=_split_classes,
              help="Comma-separated class names. Required with --symbol/--params (one per output class). "
                   "With --zoo: reset a detector to this subset, reusing their weights; "
                   "name a classifier's outputs (with --no-pretrained: one output per name).")
@option("--task", type=click.Choice(TASKS), default="detection", show_default=True,
              help="Task of the --symbol/--params network.")
@option("--short-side", type=click.IntRange(8, 4096), default=416, show_default=True,
              help="--symbol/--params: resize the short side of each image to this many pixels.")
@option("--max-size", type=click.IntRange(8, 8192), default=1024, show_default=True,
              help="--symbol/--params: cap on the long side after resizing.")
@option("--center-crop", type=click.IntRange(8, 4096), default=None,
              help="--symbol/--params classifiers: keep the centre N x N of the image resized to --short-side, as "
                   "GluonCV's classification preset does (--short-side 256 --center-crop 224)  [default: no crop; "
                   "--zoo classifiers get GluonCV's preset]")
@option("--score-threshold", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Detections below this score are not returned (per request: custom attribute score_threshold).")
@option("--top-k", type=click.IntRange(1), default=100, show_default=True,
              help="At most this many detections per image (per request: custom attribute top_k).")
@option("--pretrained/--no-pretrained", default=True, show_default=True,
              help="--zoo: download pretrained weights (needs internet) or use random ones.")
@option("--no-check", is_flag=True, help="Skip the check inference on the packed archive.")
@option("--out", type=click.Path(dir_okay=False, writable=True), default="model.tar.gz", show_default=True,
              help="The archive to write.")
def package(zoo_name, symbol_file, params_file, model_dir, classes, task, short_side, max_size, center_crop,
            score_threshold, top_k, pretrained, no_check, out):
    """Write model.tar.gz (weights + model.json + code/) and run one inference on it."""
    from . import package as packaging

    sources = [name for name, given in (("--zoo", zoo_name), ("--symbol/--params", symbol_file or params_file),
                                        ("--model-dir", model_dir)) if given]
    if len(sources) != 1:
        raise click.UsageError("give exactly one source: --zoo NAME, --symbol F --params F, or --model-dir DIR"
                               + ("" if not sources else " (got %s)" % " and ".join(sources)))
    if bool(symbol_file) != bool(params_file):
        raise click.UsageError("--symbol and --params go together")
    if center_crop is not None and not symbol_file:
        raise click.UsageError("--center-crop goes with --symbol/--params (--zoo classifiers get GluonCV's preset, "
                               "--model-dir models keep their model.json)")
    _refuse_unused_package_options(click.get_current_context(), sources[0])
    if symbol_file and max_size < short_side:  # only --symbol/--params read them
        raise click.BadParameter("must be >= --short-side (%d), got %d" % (short_side, max_size),
                                 param_hint="--max-size")
    check = not no_check
    if zoo_name:
        _require_modules(ZOO_MODULES, "--zoo", "zoo")
    if check:
        _require_modules(HANDLER_MODULES, "the check inference (the packed handler run once)", "serve",
                         ", or skip the check with --no-check")
    if zoo_name:
        click.echo("exporting %s from the GluonCV model zoo ..." % zoo_name, err=True)
        result = packaging.package_zoo(zoo_name, out, classes, pretrained, score_threshold, top_k, check)
    elif model_dir:
        result = packaging.package_model_dir(model_dir, out, check)
    else:
        if not classes:
            raise click.UsageError("--classes is required with --symbol/--params")
        result = packaging.package_exported(symbol_file, params_file, classes, task, out, short_side, max_size,
                                            score_threshold, top_k, check, center_crop)
    click.echo(packaging.describe(result))


@main.command()
@option("--model", "model_path", required=True, type=click.Path(exists=True),
              help="model.tar.gz, an unpacked model directory, or an exported model directory with a model.json.")
@option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port on 127.0.0.1; it answers only GET /ping and POST /invocations.")
@option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="MMS worker processes, each with a copy of the model.")
@option("--threads", type=click.IntRange(1, 256), default=None,
              help="CPU threads per worker  [default: cores / workers]")
@option("--startup-timeout", type=click.FloatRange(1.0), default=180.0, show_default=True,
              help="Seconds to wait for the first successful inference.")
@option("--max-connections", type=click.IntRange(1, 4096), default=DEFAULT_MAX_CONNECTIONS, show_default=True,
              help="Client connections served at once; more get 503.")
@option("--request-deadline", type=click.FloatRange(0.1), default=DEFAULT_REQUEST_DEADLINE, show_default=True,
              help="Seconds from a request's first byte to its body's last; a request still arriving gets 408.")
def serve(model_path, port, workers, threads, startup_timeout, max_connections, request_deadline):
    """Serve a model on http://127.0.0.1:PORT/invocations with the real SageMaker MXNet stack.

    Only GET /ping and POST /invocations are reachable; multi-model-server's management API is
    not. Runs until Ctrl-C, SIGTERM or SIGHUP (while it starts, too), then stops every server process and removes
    its files.
    """
    _require_modules(SERVE_MODULES, "deploy serve (multi-model-server, SageMaker's MXNet toolkit, mxnet)", "serve",
                     " and a Java runtime",
                     " (with a Java runtime); from here, clearsight explain works against an endpoint over HTTP "
                     "(deploy serve in that venv, or deploy sagemaker)")
    from .local_endpoint import LocalEndpoint, check_loopback, check_model_folder, check_port_free

    check_model_folder(model_path)  # before "starting ...": a folder that is no model is one error line
    check_port_free(port)  # before "starting ...": a taken port is one error line, nothing started and stopped
    check_loopback()  # as is a loopback interface that is down (it would wait --startup-timeout for nothing)
    endpoint = LocalEndpoint(model_path, port=port, workers=workers, threads=threads,
                             startup_timeout=startup_timeout, max_connections=max_connections,
                             request_deadline=request_deadline)
    # Ctrl-C, SIGTERM or SIGHUP stops it in every phase: extracting the model, waiting for the first inference
    # (up to --startup-timeout), serving. Either way it is the command's normal end: "stopping ...", exit 0.
    say_stopping = False  # once "starting ..." is out, or on a stop signal (even while the archive is extracted)
    try:
        with stop_on_signals() as stop_requests:
            try:
                endpoint.prepare()  # before "starting ...": an archive that is no model is one error line
                say_stopping = True
                click.echo("starting multi-model-server for %s on port %d ..." % (model_path, port), err=True)
                endpoint.start()  # on any exception, Stopped included, it stops what it started so far
                click.echo("logs: %s (multi-model-server's warnings and errors; per-request lines in logs/), "
                           "gate.log beside it (the request gate); removed when it stops" % endpoint.log_path,
                           err=True)
                click.echo("ready: POST images to %s/invocations (%s stops)" % (
                    endpoint.url, "SIGTERM" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "Ctrl-C"))
                while True:
                    time.sleep(0.5)
                    endpoint.check_running()
            except Stopped:
                say_stopping = True
                raise
            finally:
                stop_requests.ignore_more()  # a repeated signal must not cut the cleanup short
                try:
                    if say_stopping:
                        click.echo("stopping ...", err=True)
                finally:  # even when stderr is gone (a closed pipe): leave no server process behind
                    endpoint.stop()
    except Stopped:
        ignore_stop_signals()  # stopped and cleaned up: only the exit (0) is left


main.add_command(sagemaker)


def run():
    """Entry point: DeployError -> one line on stderr and exit 1."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except DeployError as error:
        click.echo("error: %s" % error, err=True)
        sys.exit(1)
