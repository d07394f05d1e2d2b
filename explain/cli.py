"""Command line: python -m explain [--clarify-config analysis_config.json] --endpoint ENDPOINT --out DIR IMAGE..."""

from __future__ import annotations

import codecs
import contextlib
import errno
import functools
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

import click
from tqdm.contrib.logging import logging_redirect_tqdm

from serving import __version__
from serving.contract import (
    CLIENT_REQUEST_TYPES,
    JSON,
    MAX_IMAGES_PER_REQUEST,
    NPY,
    RESPONSE_TYPES,
    SAGEMAKER_MAX_REQUEST_BYTES,
)

from .baselines import baseline_file_bytes, is_s3_baseline
from .clarify_config import CLARIFY_DEFAULTS, CONFIG_KEY_OF_OPTION, MODEL_TYPES, read_clarify_config
from .clarify_dataset import dataset_sources
from .config import (
    BUILTIN_BASELINES,
    DETECTION_ONLY_SETTINGS,
    FOCUS_CHOICES,
    SEGMENTATION_METHODS,
    TASKS,
    ExplainConfig,
    names_one_s3_object,
)
from .errors import ConfigError, EndpointAccessError, ExplainError, ImageListingError
from .images import decode_image
from .manifest import is_output_mark, os_reason
from .predictors import (
    SAGEMAKER_PREFIX,
    TransportConfig,
    build_predictor,
    parse_endpoint_map,
    resolve_endpoint_names,
)
from .predictors.in_process import in_process_not_applied, is_model_path
from .runner import RunOptions, run_explanations
from .sharding import Shard
from .sources import ENDPOINT_URL_ENV, collect_sources
from .stop_signals import RunStopped, ignore_stop_signals, stop_on_signals
from .terminal import keep_standard_streams_open, log_to_terminal, printable
from .workers import run_with_workers

__all__ = ["main", "configure_logging", "kept_files_lines", "ENV_PREFIX", "VERBOSE_META"]

logger = logging.getLogger(__name__)

# Every option of `python -m explain` / `clearsight explain` can be set as CLEARSIGHT_EXPLAIN_<OPTION>.
ENV_PREFIX = "CLEARSIGHT_EXPLAIN"
_OLD_ENV_PREFIX = "EXPLAIN"  # before 0.2; still read, with a deprecation warning
_CONFIG_FIELDS = {field.name for field in fields(ExplainConfig)}
_TRANSPORT_FIELDS = ("content_type", "accept", "max_payload_bytes", "max_images_per_request", "concurrency",
                     "max_retries", "timeout", "custom_attributes", "target_model", "probability")
_CLARIFY_META = "explain.clarify_settings"
_IMAGES_FROM_CONFIG = "explain.images_from_dataset_uri"
VERBOSE_META = "clearsight.verbose"  # -v counted by an enclosing command (clearsight -v explain ...)


class EnvOption(click.Option):
    """An option shown in --help with its environment variable, which also answers to its old name.

    The variable is CLEARSIGHT_EXPLAIN_<NAME> (or ``envvar``); when it is unset the pre-0.2 name
    (EXPLAIN_<NAME>, or ``deprecated_envvar``) is read, with a warning on stderr.
    """

    def __init__(self, *args, deprecated_envvar: str | None = None, **kwargs) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, **kwargs)
        self.deprecated_envvar = deprecated_envvar

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        value = super().resolve_envvar_value(ctx)
        if value is not None and not value.strip():  # blank, as empty: unset (review 43: some were errors)
            value = None
        if value is not None or not self.name:
            return value
        old_name = self.deprecated_envvar or f"{_OLD_ENV_PREFIX}_{self.name.upper()}"
        value = os.environ.get(old_name)
        if not value or not value.strip():
            return None
        new_name = self.envvar if isinstance(self.envvar, str) else f"{ENV_PREFIX}_{self.name.upper()}"
        click.echo(f"Warning: environment variable {old_name} is deprecated; rename it to {new_name}", err=True)
        return value

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """The option, and its variable where that helps: the value came from it (review 43: a bad
        CLEARSIGHT_EXPLAIN_RESIZE read as "Invalid value for '--resize'", an option never typed) or the option is
        missing; not for a value typed on the command line (review 44: every --out error named the variable)."""
        hint = click.Parameter.get_error_hint(self, ctx)
        source = ctx.get_parameter_source(self.name) if ctx is not None and self.name else None
        if ctx is None or not self.name or source not in (None, click.core.ParameterSource.ENVIRONMENT,
                                                          click.core.ParameterSource.DEFAULT):
            return hint
        if isinstance(self.envvar, str):
            name = self.envvar
        elif ctx.auto_envvar_prefix:
            name = f"{ctx.auto_envvar_prefix}_{self.name.upper()}"
        else:
            return hint
        if source is click.core.ParameterSource.ENVIRONMENT and not os.environ.get(name, "").strip():
            name = self.deprecated_envvar or f"{_OLD_ENV_PREFIX}_{self.name.upper()}"
        return f"{hint} (env var: '{name}')"


option = functools.partial(click.option, cls=EnvOption)


def configure_logging(verbose: int) -> None:
    """Entry points only: WARNING on stderr by default, INFO with -v (retries, throttling), DEBUG with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    log_to_terminal(level)
    logging.getLogger().setLevel(level)


# What a --label-headers value that names no existing file looks like when it was meant as one.
_NAME_FILE_SUFFIXES = (".txt", ".csv", ".json", ".names", ".lst")


class NameList(click.ParamType):
    """``a,b,c``, or a file with one name per line or a JSON list of names -> ('a', 'b', 'c').

    With files allowed, a value without a comma that looks like a path (a ``/``, or a suffix
    such as ``.txt``) must be an existing file: a mistyped path is an error naming it, not a
    class name. A file may start with a UTF-8 byte-order mark (Notepad's), which is no part of
    the first name.
    """

    name = "FILE|a,b,c"

    def __init__(self, allow_file: bool) -> None:
        self.allow_file = allow_file

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        if not value.strip():  # Path('') is the current folder: not "a file ... but is a directory" (review 26)
            self.fail(f"expected comma-separated non-empty names{' or a file' if self.allow_file else ''}, "
                      f"got {value!r}", param, ctx)
        path = Path(value)
        if self.allow_file and not path.is_file() and (path.is_dir() or _looks_like_a_path(value)):
            problem = "is a directory" if path.is_dir() else "does not exist"
            self.fail(f"{value!r} looks like a file of class names but {problem}; give an existing file "
                      "(one name per line) or the names themselves as a,b,c", param, ctx)
        if self.allow_file and path.is_file():
            try:
                text = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as error:
                self.fail(f"cannot read {value!r}: {error}", param, ctx)
            names = _json_names(text)
            if names is None:  # one name per line
                names = [name for name in (line.strip() for line in text.splitlines()) if name]
        else:
            names = [name.strip() for name in value.split(",")]
        if not names or not all(names):
            self.fail(f"expected comma-separated non-empty names{' or a file' if self.allow_file else ''}, "
                      f"got {value!r}", param, ctx)
        return tuple(names)


def _json_names(text: str) -> list[str] | None:
    """The names of a file that holds a JSON list of strings (as Clarify writes label_headers:
    ``["cat", "dog"]``; read line by line it was one name), else None."""
    if not text.lstrip().startswith("["):
        return None
    try:
        names = json.loads(text)
    except ValueError:
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return [name.strip() for name in names]


def _looks_like_a_path(value: str) -> bool:
    """A single value with a path separator or a class-list file's suffix (``labels.txt``)."""
    if "," in value:
        return False
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(separator in value for separator in separators) or value.lower().endswith(_NAME_FILE_SUFFIXES)


class Baseline(click.ParamType):
    """One of the built-in baselines, an existing image file, or an image in S3 (s3://BUCKET/KEY).

    An S3 URI stays a URI here; the run reads the object when it starts (``_check_s3_baseline``),
    so a Processing job, which receives the URI, reads it with its own role.
    """

    name = "|".join(BUILTIN_BASELINES) + "|PATH|s3://BUCKET/KEY"

    def convert(self, value, param, ctx):
        if value in BUILTIN_BASELINES or Path(value).is_file():
            return value
        if value.startswith("s3://"):
            if names_one_s3_object(value):
                return value
            self.fail(f"an S3 baseline must name one object, s3://BUCKET/KEY; {value!r} does not", param, ctx)
        self.fail(f"must be one of {', '.join(BUILTIN_BASELINES)}, an existing image file or an "
                  f"s3://BUCKET/KEY image; {value!r} is none of these", param, ctx)


def _check_s3_baseline(ctx: click.Context, url: str) -> None:
    """Read and decode baseline image ``url`` (s3://BUCKET/KEY, the images' boto3 settings) before any image
    is explained, so a missing or unreadable object stops the run at once. The run keeps the URI (the
    settings, analysis.json and the report name it); its bytes enter the manifest's settings by their
    sha256, so a resumed run matches the same object."""
    try:
        decode_image(baseline_file_bytes(url), url)
    except ExplainError as error:
        message = str(error) if str(error).startswith("cannot read") else f"baseline image {url!r}: {error}"
        if ctx.get_parameter_source("baseline") is click.core.ParameterSource.DEFAULT_MAP:  # from the file
            raise click.BadParameter(f"methods.shap.baseline: {message}", ctx,
                                     _option_named(ctx, "clarify_config")) from None
        raise click.BadParameter(message, ctx, _option_named(ctx, "baseline")) from None


def _load_clarify_config(ctx: click.Context, param: click.Parameter, value):
    """Eager callback: the Clarify config's values become defaults that explicit options override."""
    if value is None:
        return None
    try:
        settings = read_clarify_config(value)
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **settings.options}
    ctx.meta[_CLARIFY_META] = settings
    return value


def _clarify_compatible(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """Eager callback: Clarify's defaults (plain SLIC, ...) under what a Clarify config or an option sets."""
    if value:
        ctx.default_map = {**CLARIFY_DEFAULTS, **(ctx.default_map or {})}
    return value


def _collect_images(ctx: click.Context, param: click.Parameter, values) -> list:
    """IMAGE arguments -> ImageSource list: files, folders (recursive jpg/jpeg/png), s3:// prefixes."""
    try:
        return collect_sources(list(values), output_mark=is_output_mark)  # an --out inside a folder
    except ImageListingError as error:  # S3 unreachable, no credentials: a failure (exit 1), not a usage error
        raise click.ClickException(printable(str(error))) from None
    except ExplainError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def _endpoint_map(ctx: click.Context, param: click.Parameter, values) -> dict[str, str]:
    try:
        return parse_endpoint_map(values)
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, param) from None


# ConfigError fields the CLI spells otherwise: the API's model is what --endpoint names
_FIELD_OPTIONS = {"model": "endpoint"}


def _option_for(ctx: click.Context, error: ConfigError) -> click.Parameter | None:
    """The CLI option a ConfigError is about: the parameter named like its ``field``, if any."""
    name = _FIELD_OPTIONS.get(error.field, error.field)
    return next((param for param in ctx.command.params if param.name == name), None)


def _usage_error(ctx: click.Context, error: ConfigError, default: str | None = None) -> click.BadParameter:
    """A ConfigError as click's usage error (exit 2), against its option (else ``default``'s); control
    characters in it (a class name from a file or a Clarify config) escaped."""
    param = _option_for(ctx, error) or (_option_named(ctx, default) if default else None)
    return click.BadParameter(printable(str(error)) + _from_the_clarify_config(ctx, param), ctx, param)


def _from_the_clarify_config(ctx: click.Context, param: click.Parameter | None) -> str:
    """' (the Clarify config's KEY)' when ``param``'s value came from --clarify-config, else ''."""
    settings = ctx.meta.get(_CLARIFY_META)
    if param is None or settings is None or param.name not in settings.options:
        return ""
    if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT_MAP:
        return ""  # given on the command line or by a variable, over the file's
    key = CONFIG_KEY_OF_OPTION.get(param.name)
    where = "label_headers or predictor.label_headers" if param.name == "label_headers" else key
    return f" (the value of {where} in --clarify-config)" if where else " (a value of --clarify-config)"


def _clarify_record(ctx: click.Context, config: ExplainConfig) -> dict | None:
    """analysis.json's ``settings_source`` for a run given --clarify-config (None without one): the file, its
    schema check, the options whose value it gave (with its key), those it set that an option or a variable
    overrode, the keys it holds that the run ignores (with the reason, as the run's warning says: a detection
    setting of a run that --task made classification too), and its dataset_uri, with whether the images
    came from it."""
    settings = ctx.meta.get(_CLARIFY_META)
    if settings is None:
        return None
    not_applied = config.not_applied()
    from_file = {name: CONFIG_KEY_OF_OPTION.get(name) for name in settings.options
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT_MAP}
    ignored = dict(settings.ignored)
    for name in [name for name in settings.options if name in not_applied]:  # review 35/37: taken, not applied
        from_file.pop(name, None)
        ignored[CONFIG_KEY_OF_OPTION.get(name) or name] = f"object detection only: this run is --task {config.task}"
    return {"clarify_config": ctx.params.get("clarify_config"), "schema_check": settings.schema_check or None,
            "options_from_config": from_file,
            "options_overridden": sorted(name for name in settings.options
                                         if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT_MAP),
            "config_keys_ignored": ignored,
            "dataset_uri": settings.dataset_uri, "images_from_dataset_uri": bool(ctx.meta.get(_IMAGES_FROM_CONFIG))}


def _warn_task_over_the_config(ctx: click.Context, task: str | None, config_task: str | None) -> None:
    """A warning when --task (or its variable) names another task than the Clarify config's model_type: the
    file's settings were read for its own task (a classification config's object-detection keys are ignored)."""
    if (task is None or config_task is None or task == config_task
            or ctx.get_parameter_source("task") is click.core.ParameterSource.DEFAULT_MAP):
        return
    model_type = next(name for name, value in MODEL_TYPES.items() if value == config_task)
    unread = ("; its object-detection keys are not applied: set model_type to OBJECT_DETECTION in the file to "
              "apply them" if task == "detection" else "; its object-detection keys do not apply to it")
    logger.warning("--task %s overrides the Clarify config's %s %s%s", task, CONFIG_KEY_OF_OPTION["task"],
                   model_type, unread)


def _images_from_config(ctx: click.Context) -> list:
    """No IMAGE argument: the images of the Clarify config's dataset_uri, else a usage error."""
    settings = ctx.meta.get(_CLARIFY_META)
    if settings is None or settings.dataset_uri is None:
        raise click.UsageError("no images: give IMAGE... (files, folders, s3://BUCKET/PREFIX) or a "
                               "--clarify-config whose dataset_uri names them", ctx)
    try:
        return dataset_sources(settings.dataset_uri, output_mark=is_output_mark)  # earlier runs' --out inside
    except ImageListingError as error:  # S3 unreachable, no credentials: a failure (exit 1), as for IMAGE
        raise click.ClickException(printable(f"dataset_uri {settings.dataset_uri!r}: {error}")) from None
    except ExplainError as error:
        raise click.BadParameter(f"dataset_uri {settings.dataset_uri!r}: {error}", ctx,
                                 _option_named(ctx, "clarify_config")) from None


def _file_name_encoding() -> str | None:
    """The file-name encoding Python uses here when it is not UTF-8 (a locale without UTF-8 and PYTHONUTF8=0,
    or an ISO-8859 one), else None."""
    encoding = sys.getfilesystemencoding()
    return None if codecs.lookup(encoding).name == "utf-8" else encoding


def _warn_file_name_encoding() -> None:
    encoding = _file_name_encoding()
    if encoding is not None:
        logger.warning("Python reads and writes file names as %s here (a locale without UTF-8): an image name "
                       "outside ASCII gets other keys and output names than in a UTF-8 locale, and a --out begun "
                       "in one cannot be resumed in the other; run with PYTHONUTF8=1 (or a UTF-8 locale)", encoding)


def _out_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """--out as a Path; an empty one (``--out ""``, or only spaces) is refused: a Path made of it is the
    current folder, which is not what was meant."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("give a folder (an empty --out would be the current folder; write . for that)",
                                 ctx, param)
    return Path(value)


def _warn_deprecated_aws_endpoint() -> None:
    if os.environ.get(ENDPOINT_URL_ENV):
        logger.warning("%s is deprecated: set AWS_ENDPOINT_URL (every AWS service) or AWS_ENDPOINT_URL_S3, "
                       "which boto3 reads itself", ENDPOINT_URL_ENV)


@click.command(context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"],
                                 "show_default": True, "max_content_width": 100})
@click.argument("images", nargs=-1, required=False, callback=_collect_images)
@option("--clarify-config", type=click.Path(exists=True, dir_okay=False), is_eager=True,
        callback=_load_clarify_config,
        help="Clarify analysis_config.json: its settings, endpoint_name and dataset_uri are defaults that "
             "options and IMAGE arguments override (the guide: docs/from-clarify.md in the source tree, not in "
             "the wheel).")
@option("--clarify-compatible", is_flag=True, default=False, is_eager=True, callback=_clarify_compatible,
        help=f"Clarify's defaults, segmentation included (--segmentation {CLARIFY_DEFAULTS['segmentation']}, "
             f"--content-type {CLARIFY_DEFAULTS['content_type']}), to reproduce a Clarify run's segments; "
             "a Clarify config and options still override them.")
@option("--endpoint", multiple=True,
        help="http(s)://HOST:PORT, sagemaker:ENDPOINT_NAME, a model directory or a model.tar.gz; "
             "repeat it to spread requests over several endpoints (least outstanding work).  "
             "[default: sagemaker:<predictor.endpoint_name> of --clarify-config]")
@option("--endpoint-map", multiple=True, metavar="NAME=URL", callback=_endpoint_map,
        help="Send SageMaker endpoint NAME (from --endpoint sagemaker:NAME or a Clarify config's "
             "endpoint_name) to URL instead (an http(s) URL, a model directory or a model.tar.gz); "
             "repeatable; in the environment, separate entries by spaces.  [default: none: boto3's "
             "invoke_endpoint]")
@option("--task", type=click.Choice(TASKS), required=True, help="What the model predicts.")
@option("--out", "out_dir", type=click.Path(file_okay=False), required=True, callback=_out_folder,
        envvar=f"{ENV_PREFIX}_OUT", deprecated_envvar=f"{_OLD_ENV_PREFIX}_OUT",
        help="Directory for the images, analysis.json and report.html.")
@option("--num-samples", type=int, default=500,
        help="Model evaluations of masked images per image (Kernel SHAP samples), anchors and refinement "
             "included; with --context below 1 per detection target (each is then a game of its own), "
             "so an image costs up to --max-objects times as many.")
@option("--num-segments", type=int, default=20,
        help="Number of superpixels (exact for merged unless the image holds fewer superpixels, which "
             "a warning says; approximate for slic/slico).")
@option("--segment-compactness", type=float, default=5.0, help="SLIC compactness.")
@option("--segmentation", type=click.Choice(SEGMENTATION_METHODS), default="merged",
        help="How superpixels are made: merged = SLICO over-segmentation merged by colour "
             "(follows object outlines); slico = SLIC(O) superpixels alone; slic = plain SLIC "
             f"(--clarify-compatible picks {CLARIFY_DEFAULTS['segmentation']}, closest to Clarify's).")
@option("--focus", type=click.Choice(FOCUS_CHOICES), default="boxes",
        help="Detection: boxes = the targets' boxes are segment borders, and boxes and their "
             "surroundings get more, smaller segments than far background; none = segments ignore "
             "the targets (Clarify's; --clarify-compatible picks none).")
@option("--refine-fraction", type=float, default=0.4,
        help="Share of --num-samples spent splitting the segments that hold the most value in two, "
             "their value with them, best first; 0 = keep the coarse segments (Clarify's; "
             "--clarify-compatible picks 0).")
@option("--max-segments", type=int, default=64,
        help="Most segments refinement may reach.")
@option("--baseline", type=Baseline(), default="noise", metavar="noise|mean|blur|black|PATH|s3://BUCKET/KEY",
        help="What replaces a hidden superpixel: a built-in baseline, an image file, or an image in S3 "
             "(read when the run starts, with the images' AWS settings).")
@option("--max-objects", type=int, default=3, help="Detection: explain the top objects only.")
@option("--iou-threshold", type=float, default=0.5,
        help="Detection: IoU a masked image's box needs to count as the same object.")
@option("--context", type=float, default=1.0,
        help="Detection: share of the image outside the box that takes part (0..1); below 1 each target "
             "is explained with --num-samples calls of its own.")
@option("--probability-threshold", type=float, default=0.5,
        help="Detection: explain objects scored at least this.")
@option("--label-headers", type=NameList(allow_file=True), default=None, metavar="FILE|a,b,c",
        help="Class names in class-id order: a file with one per line (or a JSON list), or a,b,c. A value with a / or "
             "a .txt/.csv/.json/.names/.lst suffix must be an existing file; a list whose length is not the "
             "model's class count (known for model folders, and for a classifier from its first answer) is "
             "an error.  [default: from the model if known]")
@option("--labels", type=NameList(allow_file=False), default=None, metavar="a,b,c",
        help="Classification: class names or ids to explain, a,b,c (a class named twice, as circle,0, is "
             "explained once).  [default: the top class]")
@option("--seed", type=int, default=0, help="Seed of the sampler (same seed, same values).")
@option("--target-error", type=float, default=None,
        help="Stop sampling the coarse segments early once every standard error is below this share of the "
             "output's range (0..1]; refinement still spends its share, and each target's `converged` says "
             "whether the final values meet it.  [default: use all --num-samples]")
@option("--metrics", is_flag=True, default=False, help="Also compute faithfulness metrics.")
@option("--resize", type=int, default=None,
        help="Resize images so the long side has this many pixels before explaining.")
@option("--content-type", type=click.Choice(CLIENT_REQUEST_TYPES), default=NPY,
        help="Request encoding; jpeg and png carry one image per request.")
@option("--accept", type=click.Choice(RESPONSE_TYPES), default=JSON, help="Response encoding.")
@option("--probability", default=None, metavar="JMESPATH",
        help="Where the scores are in a JSON answer (Clarify's predictor.probability), e.g. prediction "
             "for {\"prediction\": [...]}.  [default: the answer is the scores, or its \"prediction\" field]")
@option("--custom-attributes", default=None,
        help="X-Amzn-SageMaker-Custom-Attributes of every request; for detection score_threshold=0 is added "
             "unless it sets score_threshold (every score counts).  [default: score_threshold=0 for detection, "
             "none for classification]")
@option("--target-model", default=None,
        help="Model of a multi-model endpoint to invoke (TargetModel).  [default: none]")
@option("--max-payload-bytes", type=int, default=SAGEMAKER_MAX_REQUEST_BYTES,
        help="Largest request body (SageMaker's real-time limit).")
@option("--max-images-per-request", type=int, default=MAX_IMAGES_PER_REQUEST,
        help="Images in one request at most (the endpoint's SERVING_MAX_IMAGES_PER_REQUEST default).")
@option("--concurrency", type=int, default=4,
        help="Requests in flight at most per endpoint, shared by the images in flight.")
@option("--max-retries", type=int, default=5,
        help="Retries of a request after a connection error, timeout, 429 or 5xx.")
@option("--timeout", type=float, default=70.0,
        help="Seconds to wait for bytes of one response; over HTTP also for its whole body (then it is retried).")
@option("--images-in-flight", type=click.IntRange(1, 256), default=2,
        help="Images explained at once; their requests share --concurrency.")
@option("--workers", type=click.IntRange(1, 64), default=1,
        help="Worker processes, each explaining one shard of the images (stable hash of the "
             "image's relative path) with its own connections and --concurrency, then one merged "
             "analysis.json and report.html.")
@option("--shard", default=None, metavar="INDEX/COUNT",
        help="Explain only shard INDEX (0-based) of COUNT, e.g. on one of several machines "
             "sharing --out; no report (a later run without --shard merges).  [default: all]")
@option("--restart", is_flag=True, default=False,
        help="Delete the outputs and manifests of earlier runs in --out (only analysis.json, report.html "
             "and the files their manifests list) and explain every image again.  "
             "[default: resume: skip images already finished with the same settings]")
@option("--retry-failed", is_flag=True, default=False,
        help="Try again images an earlier run recorded as failed because of their bytes (not JPEG "
             "or PNG, truncated, too many pixels, too small).  [default: skip them while their bytes "
             "are unchanged; images that could not be read or that the endpoint rejected are always "
             "tried again]")
@option("--allow-partial", is_flag=True, default=False,
        help="Exit 0 when some images failed but others were explained (the failures are listed "
             "on stdout and in analysis.json).  [default: exit 1 when any image failed]")
@option("--allow-non-empty-out", is_flag=True, default=False,
        help="Write into an --out that already holds files clearsight did not make (it adds only its "
             "own files).  [default: refuse a non-empty folder without clearsight's "
             ".clearsight-output marker]")
@option("--manifest-tag", default=None, hidden=True, help="Name of this process's manifest file.")
@option("--no-report", is_flag=True, default=False, hidden=True,
        help="Do not write analysis.json and report.html (a merge step does).")
@option("--merged-by", default=None, hidden=True,
        help="What merges the report of a run with --no-report (said on its last line).")
@option("--quiet", "-q", is_flag=True, default=False, help="No progress bars on stderr.")
@option("--verbose", "-v", count=True,
        help="Log more on stderr: -v retries, throttling and endpoint resolution (INFO), -vv DEBUG.  "
             "[default: warnings only]", show_default=False)
@click.version_option(__version__, "-V", "--version", prog_name="clearsight explain")
@click.pass_context
def main(ctx: click.Context, images: list, endpoint: tuple[str, ...], endpoint_map: dict[str, str], task: str,
         out_dir: Path, quiet: bool, verbose: int, images_in_flight: int, workers: int, shard: str | None,
         restart: bool, retry_failed: bool, allow_partial: bool, allow_non_empty_out: bool,
         manifest_tag: str | None, no_report: bool, merged_by: str | None, clarify_config: str | None,
         clarify_compatible: bool, **options) -> None:
    """Explain an image model's predictions with Kernel SHAP over superpixels.

    IMAGE... are image files, directories (searched for .jpg, .jpeg, .png) or
    s3://BUCKET/PREFIX (boto3's usual settings; AWS_ENDPOINT_URL_S3 points S3 calls
    elsewhere, e.g. at a moto server); without them, the images are the --clarify-config's
    dataset_uri (an S3 prefix, a folder or a manifest file). Results go into --out: per image
    shap_<stem>_box<k>_object.jpeg and <stem>_objects.jpeg (detection) or shap_<stem>.jpeg
    (classification), <stem>_shap.npz, and analysis.json and report.html for the run. --out
    keeps a manifest (manifest*.jsonl, one line per finished image): run the same command
    again after an interruption and it skips finished images. An image that fails
    (unreadable, not JPEG/PNG, too large, rejected by the endpoint) is recorded with its
    reason and the run goes on; the exit status is then 1 unless --allow-partial. Every
    option can also be set as CLEARSIGHT_EXPLAIN_<OPTION> (e.g.
    CLEARSIGHT_EXPLAIN_NUM_SAMPLES=200), as --help lists.
    """
    keep_standard_streams_open()  # 2>&-: no progress bar or log line may fail on a missing stream
    configure_logging(verbose + ctx.meta.get(VERBOSE_META, 0))
    _warn_file_name_encoding()
    _warn_deprecated_aws_endpoint()
    clarify_settings = ctx.meta.get(_CLARIFY_META)
    if clarify_settings is not None:
        clarify_settings.log_notes()
        _warn_task_over_the_config(ctx, task, clarify_settings.options.get("task"))
    if not endpoint:
        hint = None
        if clarify_settings is not None and "predictor.model_name" in clarify_settings.ignored:
            hint = ("The Clarify config names a model (predictor.model_name) but no endpoint_name: serve the "
                    "model (clearsight deploy serve, or clearsight deploy sagemaker up) and give its endpoint.")
        elif clarify_settings is not None:
            hint = ("The Clarify config has no predictor.endpoint_name: add it, or give --endpoint.")
        raise click.MissingParameter(hint, ctx, _option_named(ctx, "endpoint"))
    if not images:
        images = _images_from_config(ctx)
        ctx.meta[_IMAGES_FROM_CONFIG] = True
    elif clarify_settings is not None and clarify_settings.dataset_uri is not None:
        logger.info("IMAGE arguments given: the Clarify config's dataset_uri %s is not used",
                    clarify_settings.dataset_uri)
    endpoints = resolve_endpoint_names(endpoint, endpoint_map)
    if is_s3_baseline(options["baseline"]):
        _check_s3_baseline(ctx, options["baseline"])
    try:  # every setting is checked here, before any image is read or endpoint called
        config = ExplainConfig(task=task, **{name: value for name, value in options.items()
                                             if name in _CONFIG_FIELDS})
        transport = TransportConfig(**{name: options[name] for name in _TRANSPORT_FIELDS})
        run_shard = Shard.parse(shard) if shard is not None else Shard()
        run_options = RunOptions(images_in_flight=images_in_flight, shard=run_shard,
                                 manifest_tag=manifest_tag, restart=restart, retry_failed=retry_failed,
                                 allow_non_empty_out=allow_non_empty_out,
                                 merge=run_shard.count == 1 and not no_report, progress=not quiet)
    except ConfigError as error:
        raise _usage_error(ctx, error) from None
    _warn_not_applied(ctx, config)
    _warn_in_process(endpoints, transport)
    if restart and shard is not None:
        raise click.BadParameter("--restart and --shard exclude each other: one shard's restart would discard "
                                 "the other shards' manifests; use a new --out, or empty --out once "
                                 "before starting the shards", ctx, _option_named(ctx, "restart"))
    if workers > 1 and shard is not None:
        raise click.BadParameter("--workers and --shard exclude each other: --workers shards by itself",
                                 ctx, _option_named(ctx, "workers"))
    try:
        # SIGTERM, SIGHUP: RunStopped, which unwinds as Ctrl-C does; a repeat does not cut the unwinding short
        with stop_on_signals(ctrl_c=True):
            summary = _run(ctx, images, endpoints, task, transport, config, out_dir, workers, run_options,
                           _clarify_record(ctx, config))
    except (RunStopped, KeyboardInterrupt) as stopped:
        ignore_stop_signals()  # unwound: only the last line and the exit are left
        _stop(StoppedBySignal(stopped, out_dir))
    except UnicodeEncodeError as error:
        if _file_name_encoding() is None:
            raise
        raise click.ClickException(  # a name an earlier run wrote in a UTF-8 locale: it had a traceback
            f"a file name holds {error.object[error.start:error.end]!r}, which file names cannot hold in this "
            f"locale's encoding ({sys.getfilesystemencoding()}): run with PYTHONUTF8=1 (or a UTF-8 locale), as "
            f"the run that wrote --out {printable(str(out_dir))} was") from None
    merge_hint = ("run without --shard to merge the report" if shard is not None
                  else merged_by or "no report: --no-report")
    _finish(summary, out_dir, allow_partial, merge_hint)


def _warn_not_applied(ctx: click.Context, config: ExplainConfig) -> None:
    """One warning naming the options given (command line or environment) that this run ignores: the
    detection-only ones of a classification run (a Clarify config's are named in its own warning)."""
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    ignored = [name for name in DETECTION_ONLY_SETTINGS
               if name in config.not_applied() and ctx.get_parameter_source(name) in given]
    if ignored:
        one = len(ignored) == 1
        logger.warning("%s %s to detection only; this run is --task %s, so %s ignored (analysis.json "
                       "lists %s under settings_not_applied)",
                       ", ".join("--" + name.replace("_", "-") for name in ignored), "applies" if one else "apply",
                       config.task, "it is" if one else "they are", "it" if one else "them")


def _warn_in_process(endpoints: list[str], transport: TransportConfig) -> None:
    """One warning naming the network settings given (other than their defaults) that a model run in this
    process ignores (``in_process_not_applied``); its other request settings apply as over HTTP."""
    local = [endpoint for endpoint in endpoints if not endpoint.strip().lower().startswith(("http://", "https://"))
             and not endpoint.strip().startswith(SAGEMAKER_PREFIX)
             and is_model_path(Path(endpoint.strip()).expanduser())]
    ignored = in_process_not_applied(transport) if local else {}
    if ignored:
        one = len(ignored) == 1
        logger.warning("%s %s to a model run in this process (%s): %s; %s ignored (analysis.json "
                       "lists %s under settings_not_applied)",
                       ", ".join("--" + name.replace("_", "-") for name in ignored),
                       "does not apply" if one else "do not apply", ", ".join(local),
                       "; ".join(reason.removeprefix("in-process model: ") for reason in ignored.values()),
                       "it is" if one else "they are", "it" if one else "them")


class StoppedBySignal(click.ClickException):
    """The run was stopped by SIGTERM, SIGHUP or Ctrl-C: one line, exit status 128 + the signal's number."""

    def __init__(self, stopped: RunStopped | KeyboardInterrupt, out_dir: Path) -> None:
        name = stopped.signal_name if isinstance(stopped, RunStopped) else "Ctrl-C"
        kept = (f"the images finished so far are kept in {out_dir}" if Path(out_dir).is_dir()
                else f"nothing was written ({out_dir} was not made yet)")
        super().__init__(f"stopped by {name}; {kept}: run the same command again to resume")
        self.exit_code = stopped.exit_status if isinstance(stopped, RunStopped) else 128 + signal.SIGINT


def _stop(stopped: StoppedBySignal) -> NoReturn:
    """End a stopped run now. It has unwound (workers stopped, --out's lock released, an extracted
    model removed, every finished image in the manifest); a thread still waiting on a model call
    (up to --timeout, then the retries) would hold the process at exit, so it is abandoned: the
    line is printed and the process exits at once (what the --workers processes do too)."""
    lingering = [thread for thread in threading.enumerate()
                 if thread is not threading.main_thread() and thread.is_alive() and not thread.daemon]
    if not lingering:
        raise stopped
    stopped.show()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stopped.exit_code)


def _run(ctx: click.Context, images: list, endpoints: list[str], task: str, transport: TransportConfig,
         config: ExplainConfig, out_dir: Path, workers: int, run_options: RunOptions,
         settings_source: dict | None) -> dict:
    """The run itself, with --workers processes or in this one; errors become click's."""
    if workers > 1:
        with _click_errors(ctx, endpoints, out_dir):
            return run_with_workers(images, endpoints, task, transport, config, out_dir, workers, run_options,
                                    settings_source)
    with _click_errors(ctx, endpoints, None, usage_default="endpoint"):
        predictor = build_predictor(endpoints, task, transport)
    try:
        # log lines above the progress bar, not inside it
        with _click_errors(ctx, endpoints, out_dir), (
                logging_redirect_tqdm() if run_options.progress else contextlib.nullcontext()):
            return run_explanations(images, predictor, config, out_dir, run_options,
                                    settings_source=settings_source)
    finally:
        predictor.close()


@contextlib.contextmanager
def _click_errors(ctx: click.Context, endpoints: list[str], out_dir: Path | None, usage_default: str | None = None):
    """The run's errors as click's: a setting (usage error, naming ``usage_default`` when the error names no
    option), an endpoint this machine cannot call, any other ExplainError (control characters escaped: it
    may quote an endpoint's answer), and, with ``out_dir``, an OSError (writing there)."""
    try:
        yield
    except ConfigError as error:
        raise _usage_error(ctx, error, default=usage_default) from None
    except EndpointAccessError as error:
        raise _endpoint_access_error(ctx, error, endpoints) from None
    except ExplainError as error:
        raise click.ClickException(printable(str(error))) from None
    except OSError as error:
        if out_dir is None:
            raise
        raise _write_error(error, out_dir) from None


def _endpoint_access_error(ctx: click.Context, error: EndpointAccessError,
                           endpoints: list[str]) -> click.ClickException:
    """An endpoint this machine cannot call (no AWS credentials, no such endpoint) as one line: the error,
    where its SageMaker endpoint name came from, and the --endpoint-map entry that sends it elsewhere."""
    names = [endpoint[len(SAGEMAKER_PREFIX):] for endpoint in endpoints if endpoint.startswith(SAGEMAKER_PREFIX)]
    if not names:
        return click.ClickException(printable(str(error)))
    source = ctx.get_parameter_source("endpoint")
    if source == click.core.ParameterSource.DEFAULT_MAP and ctx.meta.get(_CLARIFY_META) is not None:
        origin = "the Clarify config's predictor.endpoint_name"
    elif source == click.core.ParameterSource.ENVIRONMENT:
        origin = f"{ENV_PREFIX}_ENDPOINT"
    else:
        origin = "--endpoint"
    listed = ", ".join(names)
    return click.ClickException(
        f"{printable(str(error))}. {listed} (from {origin}) was resolved as a SageMaker endpoint name, called "
        "through AWS, because "
        f"no --endpoint-map entry names it; --endpoint-map {names[0]}=URL (e.g. http://127.0.0.1:8080) sends it "
        "to a local endpoint instead. The run stopped at its first image; no image was recorded as failed")


# What a write into an open file fails with (no file name on the error): a full disk, a quota, ...
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _write_error(error: OSError, out_dir: Path) -> click.ClickException | OSError:
    """A file error that stopped the run as one line: writing into --out (a full disk, a folder made
    read-only meanwhile) names --out and the reason. A write to an open file names no file: the run
    writes only into --out, so one of ``_WRITE_ERRNOS`` names it too; any other error without a file
    is raised as it is."""
    resume = ("; the images finished so far are kept in it: once it can be written, run the same command again "
              "(without --restart) to resume")  # review 43: as a stop by signal says
    if not error.filename:
        if error.errno in _WRITE_ERRNOS:
            return click.ClickException(f"cannot write into --out {out_dir}: {os_reason(error)}{resume}")
        return error
    path = Path(os.fsdecode(error.filename))
    if path == out_dir or out_dir in path.parents:
        return click.ClickException(f"cannot write into --out {out_dir}: {os_reason(error)}{resume}")
    return click.ClickException(f"{path}: {os_reason(error)}")


def _option_named(ctx: click.Context, name: str) -> click.Parameter:
    return next(param for param in ctx.command.params if param.name == name)


def _finish(summary: dict, out_dir: Path, allow_partial: bool, merge_hint: str) -> None:
    """Print the summary; exit 1 when an image failed, unless ``allow_partial``, or when stdout cannot take it."""
    try:
        _echo_encodable(_summary_text(summary, out_dir, merge_hint))
    except BrokenPipeError:
        raise  # `| head -1`: Python's own quiet end of a closed pipe
    except OSError as error:  # >/dev/full: a traceback after every result was written
        raise click.ClickException(f"cannot write the summary to stdout ({os_reason(error)}); the results are in "
                                   f"{printable(str(out_dir))}") from None
    failed = summary.get("totals", summary).get("failed") or []
    if failed and not allow_partial:
        raise click.ClickException(
            f"{len(failed)} image(s) failed (listed above and in analysis.json); the others were explained. "
            "Add --allow-partial to exit 0 on such runs")


def _echo_encodable(text: str) -> None:
    """``text`` on stdout, what its encoding cannot write (a Latin-1 terminal: '猫' in a name; a name's byte
    that is not UTF-8) as backslash escapes (``\\u732b``, ``\\udcff``), as stderr writes it."""
    encoding = getattr(click.get_text_stream("stdout"), "encoding", None) or "utf-8"
    click.echo(text.encode(encoding, "backslashreplace").decode(encoding))


def _summary_text(summary: dict, out_dir: Path, merge_hint: str) -> str:
    """A few lines for stdout: totals, the predictor's counters, where the results are.

    merge_hint: what writes the report of a run that did not (one shard, --no-report).
    """
    totals = summary.get("totals", summary)
    if "targets" not in totals:  # one shard of a larger run: no report yet
        return "\n".join([
            f"shard: explained {totals.get('explained', 0)} image(s), skipped "
            f"{totals.get('skipped', 0)} already done, in {totals.get('seconds', 0.0):.1f} s",
            *_failure_lines(totals.get("failed") or []),
            f"results in {out_dir} ({merge_hint})"])
    resumed = totals.get("images", 0) - totals.get("explained_now", totals.get("images", 0))
    if resumed > 0 and resumed == totals.get("images", 0):  # a merge only, or a fully resumed run
        lines = [f"{totals['images']} image(s), {totals.get('targets', 0)} target(s) with "
                 f"{totals.get('model_calls', 0)} model calls, all explained by earlier runs "
                 f"({totals.get('explain_seconds', 0.0):.1f} s of explaining); this run merged them in "
                 f"{totals.get('seconds', 0.0):.1f} s"]
    else:
        lines = [f"explained {totals.get('images', 0)} image(s), {totals.get('targets', 0)} target(s) "
                 f"with {totals.get('model_calls', 0)} model calls in {totals.get('seconds', 0.0):.1f} s"]
    if resumed > 0:
        lines.append(f"{resumed} image(s) were finished by an earlier run and skipped")
    lines += _failure_lines(totals.get("failed") or [])
    if totals.get("unfinished"):
        lines.append(f"{len(totals['unfinished'])} image(s) not finished yet")
    stats = summary.get("predictor")
    if stats:
        lines.append(f"{stats['transport']} {stats['endpoint']}: {stats['requests']} request(s), "
                     f"{stats['retries']} retries, {stats['bytes_sent']} bytes sent")
    lines.append(f"results in {out_dir} (report: {Path(out_dir) / 'report.html'})")
    return "\n".join(lines)


def _failure_lines(failed: list[dict], shown: int = 5) -> list[str]:
    """Lines naming failed images and why (the first ``shown``; analysis.json lists them all)."""
    if not failed:
        return []
    earlier = sum(1 for item in failed if item.get("earlier"))
    lines = [f"{len(failed)} image(s) failed" + (f" ({earlier} in an earlier run, not tried again: "
                                                  "--retry-failed tries them)" if earlier else "") + ":"]
    for item in failed[:shown]:
        lines.append(f"  {printable(item['image'])}: {item['kind']}: {printable(item['reason'])}")
        lines += kept_files_lines(item)
    if len(failed) > shown:
        lines.append(f"  ... and {len(failed) - shown} more in analysis.json (totals.failed)")
    unshown = sum(1 for item in failed[shown:] if item.get("files_from_earlier_run"))
    if unshown:
        lines.append(f"  ({unshown} of those more still have files from an earlier run in --out, not this "
                     "one's: analysis.json lists them as files_from_earlier_run)")
    return lines


def kept_files_lines(item: dict, indent: str = "    ") -> list[str]:
    """For a failed image of a summary (``totals.failed``) whose stem still has an earlier explanation's
    files (``files_from_earlier_run``): one line naming them as not this run's; else none."""
    kept = item.get("files_from_earlier_run") or []
    if not kept:
        return []
    shown = ", ".join(map(printable, kept[:4])) + (f" and {len(kept) - 4} more" if len(kept) > 4 else "")
    return [f"{indent}files from an earlier run, not this one: {shown}"]
