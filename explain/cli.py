"""Command line: python -m explain --endpoint ENDPOINT --task TASK --out DIR IMAGE..."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import click

from .clarify_config import read_clarify_config
from .config import BUILTIN_BASELINES, FOCUS_CHOICES, SEGMENTATION_METHODS, TASKS, ExplainConfig
from .errors import ConfigError, ExplainError

__all__ = ["main"]

logger = logging.getLogger(__name__)

CONTENT_TYPES = ("application/x-npy", "image/jpeg", "image/png")
ACCEPT_TYPES = ("application/json", "application/x-npy")
_CONFIG_FIELDS = {field.name for field in fields(ExplainConfig)}
_TRANSPORT_OPTIONS = ("content_type", "accept", "max_payload_bytes", "concurrency", "max_retries", "timeout")


class NameList(click.ParamType):
    """``a,b,c`` or a file with one name per line -> ('a', 'b', 'c')."""

    name = "FILE|a,b,c"

    def __init__(self, allow_file: bool) -> None:
        self.allow_file = allow_file

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        path = Path(value)
        if self.allow_file and path.is_file():
            try:
                names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as error:
                self.fail(f"cannot read {value!r}: {error}", param, ctx)
            names = [name for name in names if name]
        else:
            names = [name.strip() for name in value.split(",")]
        if not names or not all(names):
            self.fail(f"expected comma-separated non-empty names{' or a file' if self.allow_file else ''}, "
                      f"got {value!r}", param, ctx)
        return tuple(names)


class Baseline(click.ParamType):
    """One of the built-in baselines or an existing image file."""

    name = "|".join(BUILTIN_BASELINES) + "|PATH"

    def convert(self, value, param, ctx):
        if value in BUILTIN_BASELINES or Path(value).is_file():
            return value
        self.fail(f"must be one of {', '.join(BUILTIN_BASELINES)} or an existing image file; "
                  f"{value!r} is neither", param, ctx)


def _load_clarify_config(ctx: click.Context, param: click.Parameter, value):
    """Eager callback: the Clarify config's values become defaults that explicit options override."""
    if value is None:
        return None
    try:
        settings = read_clarify_config(value)
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    return value


def _collect_images(ctx: click.Context, param: click.Parameter, values) -> list:
    """IMAGE arguments -> ImageSource list: files, folders (recursive jpg/jpeg/png), s3:// prefixes."""
    from .sources import collect_sources

    try:
        return collect_sources(list(values))
    except ExplainError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def _option_for(ctx: click.Context, error: ConfigError) -> click.Parameter | None:
    """The CLI option a ConfigError message is about (messages start with the field name)."""
    first_word = str(error).split(" ", 1)[0].rstrip(":,")
    for param in ctx.command.params:
        if param.name == first_word:
            return param
    return None


@click.command(context_settings={"auto_envvar_prefix": "EXPLAIN", "help_option_names": ["-h", "--help"],
                                 "show_default": True, "max_content_width": 100})
@click.argument("images", nargs=-1, required=True, callback=_collect_images)
@click.option("--clarify-config", type=click.Path(exists=True, dir_okay=False), is_eager=True,
              expose_value=False, callback=_load_clarify_config,
              help="Clarify analysis_config.json; its values are defaults that explicit options override.")
@click.option("--endpoint", required=True, multiple=True, show_envvar=True,
              help="http(s)://HOST:PORT, sagemaker:ENDPOINT_NAME, a model directory or a model.tar.gz; "
                   "repeat it to spread requests over several endpoints (least outstanding work).")
@click.option("--task", type=click.Choice(TASKS), required=True, show_envvar=True,
              help="What the model predicts.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              envvar="EXPLAIN_OUT", show_envvar=True, help="Directory for the images, analysis.json and report.html.")
@click.option("--num-samples", type=int, default=500,
              help="Model evaluations of masked images per image (Kernel SHAP samples).")
@click.option("--num-segments", type=int, default=20,
              help="Number of superpixels (exact for merged, approximate for slico).")
@click.option("--segment-compactness", type=float, default=5.0, help="SLIC compactness.")
@click.option("--segmentation", type=click.Choice(SEGMENTATION_METHODS), default="merged",
              help="How superpixels are made: merged = SLICO over-segmentation merged by colour "
                   "(follows object outlines); slico = SLICO superpixels alone; slic = scikit-image's "
                   "plain SLIC (Clarify's; with --focus none --refine-fraction 0 for Clarify's behaviour).")
@click.option("--focus", type=click.Choice(FOCUS_CHOICES), default="boxes",
              help="Detection: boxes = target boxes are segment borders and boxes and their "
                   "surroundings get more, smaller segments; none = segments ignore the targets.")
@click.option("--refine-fraction", type=float, default=0.4,
              help="Share of --num-samples spent splitting the segments that hold the most value "
                   "in two (and their value with them), best first; 0 = no refinement.")
@click.option("--max-segments", type=int, default=64,
              help="Most segments refinement may reach.")
@click.option("--baseline", type=Baseline(), default="noise", metavar="noise|mean|blur|black|PATH",
              help="What replaces a hidden superpixel: a built-in baseline or an image file.")
@click.option("--max-objects", type=int, default=3, help="Detection: explain the top objects only.")
@click.option("--iou-threshold", type=float, default=0.5,
              help="Detection: IoU a masked image's box needs to count as the same object.")
@click.option("--context", type=float, default=1.0,
              help="Detection: share of the image outside the box that takes part (0..1).")
@click.option("--probability-threshold", type=float, default=0.5,
              help="Detection: explain objects scored at least this.")
@click.option("--label-headers", type=NameList(allow_file=True), default=None, metavar="FILE|a,b,c",
              help="Class names: a file with one per line, or a,b,c.  [default: from the model if known]")
@click.option("--labels", type=NameList(allow_file=False), default=None, metavar="a,b,c",
              help="Classification: class names or ids to explain, a,b,c.  [default: the top class]")
@click.option("--seed", type=int, default=0, help="Seed of the sampler (same seed, same values).")
@click.option("--target-error", type=float, default=None,
              help="Stop sampling early once every standard error is below this share of the "
                   "output's range (0..1].  [default: use all --num-samples]")
@click.option("--metrics", is_flag=True, default=False, help="Also compute faithfulness metrics.")
@click.option("--resize", type=int, default=None,
              help="Resize images so the long side has this many pixels before explaining.")
@click.option("--content-type", type=click.Choice(CONTENT_TYPES), default="application/x-npy",
              help="Request encoding; jpeg and png carry one image per request.")
@click.option("--accept", type=click.Choice(ACCEPT_TYPES), default="application/json",
              help="Response encoding.")
@click.option("--max-payload-bytes", type=int, default=6_291_456,
              help="Largest request body (SageMaker's real-time limit).")
@click.option("--concurrency", type=int, default=4,
              help="Requests in flight at most per endpoint, shared by the images in flight.")
@click.option("--max-retries", type=int, default=5,
              help="Retries of a request after a connection error, timeout, 429 or 5xx.")
@click.option("--timeout", type=float, default=70.0, help="Seconds to wait for one response.")
@click.option("--images-in-flight", type=click.IntRange(1, 256), default=2,
              help="Images explained at once; their requests share --concurrency.")
@click.option("--workers", type=click.IntRange(1, 64), default=1,
              help="Worker processes, each explaining one shard of the images (stable hash of the "
                   "image's relative path) with its own connections and --concurrency, then one merged "
                   "analysis.json and report.html.")
@click.option("--shard", default=None, metavar="INDEX/COUNT",
              help="Explain only shard INDEX (0-based) of COUNT, e.g. on one of several machines "
                   "sharing --out; no report (a later run without --shard merges).  [default: all]")
@click.option("--restart", is_flag=True, default=False,
              help="Discard the manifest of earlier runs in --out and explain every image again.  "
                   "[default: resume: skip images already finished with the same settings]")
@click.option("--manifest-tag", default=None, hidden=True, help="Name of this process's manifest file.")
@click.option("--no-report", is_flag=True, default=False, hidden=True,
              help="Do not write analysis.json and report.html (a merge step does).")
@click.option("--quiet", "-q", is_flag=True, default=False, help="No progress bars on stderr.")
@click.pass_context
def main(ctx: click.Context, images: list, endpoint: tuple[str, ...], task: str, out_dir: Path,
         quiet: bool, images_in_flight: int, workers: int, shard: str | None, restart: bool,
         manifest_tag: str | None, no_report: bool, **options) -> None:
    """Explain an image model's predictions with Kernel SHAP over superpixels.

    IMAGE... are image files, directories (searched for .jpg, .jpeg, .png) or
    s3://BUCKET/PREFIX (S3 calls go to env CLEARSIGHT_AWS_ENDPOINT_URL when set). Results go
    into --out: per image shap_<stem>_box<k>_object.jpeg and <stem>_objects.jpeg (detection)
    or shap_<stem>.jpeg (classification), <stem>_shap.npz, and analysis.json and
    report.html for the run. --out keeps a manifest (manifest*.jsonl, one line per finished
    image): run the same command again after an interruption and it skips finished images.
    Every option can also be set as EXPLAIN_<OPTION> (e.g. EXPLAIN_NUM_SAMPLES=200).
    """
    from .runner import RunOptions
    from .sharding import Shard

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config_fields = {name: value for name, value in options.items() if name in _CONFIG_FIELDS}
    transport = {name: options[name] for name in _TRANSPORT_OPTIONS}
    try:
        config = ExplainConfig(task=task, **config_fields)
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, _option_for(ctx, error)) from None
    try:
        run_shard = Shard.parse(shard) if shard is not None else Shard()
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, _option_named(ctx, "shard")) from None
    if restart and shard is not None:
        raise click.BadParameter("--restart and --shard exclude each other: one shard's restart would discard "
                                 "the other shards' manifests; use a new --out, or delete --out's "
                                 "manifest*.jsonl once before starting the shards", ctx, _option_named(ctx, "restart"))
    if workers > 1 and shard is not None:
        raise click.BadParameter("--workers and --shard exclude each other: --workers shards by itself",
                                 ctx, _option_named(ctx, "workers"))
    run_options = RunOptions(images_in_flight=images_in_flight, shard=run_shard,
                             manifest_tag=manifest_tag, restart=restart,
                             merge=run_shard.count == 1 and not no_report, progress=not quiet)
    if workers > 1:
        from .workers import run_with_workers

        try:
            summary = run_with_workers(images, list(endpoint), task, transport, config, out_dir,
                                       workers, run_options)
        except ConfigError as error:
            raise click.BadParameter(str(error), ctx, _option_for(ctx, error)) from None
        except ExplainError as error:
            raise click.ClickException(str(error)) from None
        click.echo(_summary_text(summary, out_dir))
        return
    try:
        predictor = build_predictor(list(endpoint), task, transport)
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, _option_for(ctx, error) or _option_named(ctx, "endpoint")) from None
    except ExplainError as error:
        raise click.ClickException(str(error)) from None
    try:
        label_headers = None
        if config.label_headers is None:
            label_headers = getattr(predictor, "class_names", None)
        summary = explain_and_record(images, predictor, config, out_dir, not quiet, label_headers,
                                     run_options)
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, _option_for(ctx, error)) from None
    except ExplainError as error:
        raise click.ClickException(str(error)) from None
    finally:
        predictor.close()
    click.echo(_summary_text(summary, out_dir))


def build_predictor(endpoints: list[str], task: str, transport: dict):
    """One adapter per endpoint; several are wrapped in a least-outstanding-work router."""
    from .predictors import make_predictor
    from .routing import MultiPredictor

    predictors = []
    try:
        for endpoint in endpoints:
            predictors.append(make_predictor(endpoint, task, **transport))
    except BaseException:
        for predictor in predictors:
            predictor.close()
        raise
    return predictors[0] if len(predictors) == 1 else MultiPredictor(predictors)


def _option_named(ctx: click.Context, name: str) -> click.Parameter:
    return next(param for param in ctx.command.params if param.name == name)


def explain_and_record(images, predictor, config, out_dir: Path, progress: bool, label_headers,
                       options=None) -> dict:
    """Run the resumable runner and add the predictor's request counters to analysis.json."""
    from dataclasses import replace

    from .runner import RunOptions, run_explanations, write_json_atomic
    from .sources import collect_sources

    options = replace(options or RunOptions(), progress=progress)
    if images and not hasattr(images[0], "key"):
        images = collect_sources([str(image) for image in images])
    summary = run_explanations(images, predictor, config, out_dir, options, label_headers=label_headers)
    stats = getattr(predictor, "stats", None)
    if stats is not None:
        summary["predictor"] = stats
        if options.merge:
            write_json_atomic(summary, Path(out_dir) / "analysis.json")
    return summary


def _summary_text(summary: dict, out_dir: Path) -> str:
    """A few lines for stdout: totals, the predictor's counters, where the results are."""
    totals = summary.get("totals", summary)
    if "targets" not in totals:  # one shard of a larger run: no report yet
        return (f"shard: explained {totals.get('explained', 0)} image(s), skipped "
                f"{totals.get('skipped', 0)} already finished, in {totals.get('seconds', 0.0):.1f} s; "
                f"results in {out_dir} (run without --shard to merge the report)")
    lines = [f"explained {totals.get('images', 0)} image(s), {totals.get('targets', 0)} target(s) "
             f"with {totals.get('model_calls', 0)} model calls in {totals.get('seconds', 0.0):.1f} s"]
    resumed = totals.get("images", 0) - totals.get("explained_now", totals.get("images", 0))
    if resumed > 0:
        lines.append(f"{resumed} image(s) were finished by an earlier run and skipped")
    if totals.get("unreadable"):
        lines.append(f"{len(totals['unreadable'])} image(s) could not be read and were skipped: "
                     + "; ".join(item["error"] for item in totals["unreadable"][:5]))
    if totals.get("unfinished"):
        lines.append(f"{len(totals['unfinished'])} image(s) not finished yet")
    stats = summary.get("predictor")
    if stats:
        lines.append(f"{stats['transport']} {stats['endpoint']}: {stats['requests']} request(s), "
                     f"{stats['retries']} retries, {stats['bytes_sent']} bytes sent")
    lines.append(f"results in {out_dir} (report: {Path(out_dir) / 'report.html'})")
    return "\n".join(lines)
