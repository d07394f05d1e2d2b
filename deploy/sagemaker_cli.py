"""`deploy sagemaker`: click commands up, down, status, list and invoke over the deploy.sagemaker_* modules."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image, ImageDraw

from serving.contract import SAGEMAKER_MAX_REQUEST_BYTES

from .aws_cli import (
    aws_options,
    click_failure,
    clients_for,
    progress_printer,
    resolve_region,
    usage_error,
)
from .config import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_PREFIX,
    LOG_LEVELS,
    Autoscale,
    DeployConfig,
    validate_endpoint_name,
)
from .errors import DeployConfigError, DeployError
from .sagemaker_deploy import check_model_archive, deploy
from .sagemaker_inventory import endpoint_status, list_endpoints
from .sagemaker_invoke import invoke as invoke_endpoint
from .sagemaker_teardown import teardown

__all__ = ["sagemaker"]

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = SAGEMAKER_MAX_REQUEST_BYTES  # SageMaker real-time InvokeEndpoint body limit (6 MiB)
_NPY_HEADER_BYTES = 128
_BOX_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]


_name_option = click.option(
    "--name", required=True, show_envvar=True, envvar="CLEARSIGHT_ENDPOINT_NAME",
    help="Endpoint name: 1-63 letters, digits, hyphens.",
)


@click.group(name="sagemaker")
def sagemaker() -> None:
    """Deploy model.tar.gz archives to SageMaker real-time endpoints (MXNet 1.9.0 image).

    Endpoints are billed per instance-hour until `down` deletes them.
    """
    # The SDK logs where it looked for its config file at INFO; that is noise here.
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)


@sagemaker.command()
@click.option("--model", "model_path", required=True, show_envvar=True, envvar="CLEARSIGHT_MODEL",
              type=click.Path(dir_okay=False, path_type=Path),
              help="model.tar.gz written by `clearsight deploy package`.")
@_name_option
@click.option("--instance-type", default=DEFAULT_INSTANCE_TYPE, show_default=True,
              show_envvar=True, envvar="CLEARSIGHT_INSTANCE_TYPE",
              help="SageMaker instance type (ml.*).")
@click.option("--instance-count", default=1, show_default=True, type=int,
              show_envvar=True, envvar="CLEARSIGHT_INSTANCE_COUNT",
              help="Initial number of instances.")
@click.option("--role", show_envvar=True, envvar="SAGEMAKER_ROLE", default=None,
              help="IAM role ARN SageMaker assumes to pull the image and model data. "
                   "Required.")
@click.option("--bucket", show_envvar=True, envvar="CLEARSIGHT_S3_BUCKET", default=None,
              help="S3 bucket for the model data. Default: sagemaker-<region>-<account> "
                   "(created when missing).")
@click.option("--prefix", show_envvar=True, envvar="CLEARSIGHT_S3_PREFIX", default=DEFAULT_PREFIX,
              show_default=True, help="S3 key prefix.")
@aws_options
@click.option("--workers", default=None, type=int,
              show_envvar=True, envvar="CLEARSIGHT_MODEL_SERVER_WORKERS",
              help="Model server workers per instance (sets SAGEMAKER_MODEL_SERVER_WORKERS). "
                   "Default: unset, so MMS starts one worker per GPU (one per vCPU on a CPU "
                   "instance); each worker loads its own copy of the model.")
@click.option("--server-timeout", default=60, show_default=True, type=int,
              show_envvar=True, envvar="CLEARSIGHT_MODEL_SERVER_TIMEOUT",
              help="SAGEMAKER_MODEL_SERVER_TIMEOUT of the container.")
@click.option("--log-level", default="INFO", show_default=True, show_envvar=True, envvar="CLEARSIGHT_CONTAINER_LOG_LEVEL",
              type=click.Choice(list(LOG_LEVELS)),
              help="Container log level.")
@click.option("--wait/--no-wait", default=True, show_default=True, show_envvar=True,
              envvar="CLEARSIGHT_WAIT",
              help="Wait until InService, then send one inference (failures roll back).")
@click.option("--autoscale", default=None, show_envvar=True, envvar="CLEARSIGHT_AUTOSCALE", metavar="MIN:MAX:TARGET",
              help="Target tracking on invocations per instance per minute, e.g. 1:4:100. "
                   "Default: no autoscaling (kept as it was on an update).")
@click.option("--poll-seconds", default=15.0, show_default=True, type=float,
              show_envvar=True, envvar="CLEARSIGHT_POLL_SECONDS", help="Seconds between status checks while waiting.")
@click.pass_context
def up(ctx: click.Context, model_path: Path, name: str, instance_type: str, instance_count: int,
       role: str | None, bucket: str | None, prefix: str, region: str | None,
       endpoint_url: str | None, workers: int | None, server_timeout: int, log_level: str, wait: bool,
       autoscale: str | None, poll_seconds: float) -> None:
    """Create endpoint NAME from a model.tar.gz, or update it in place if it exists.

    Uploads the archive (skipped when S3 holds the same sha256), creates a model and an
    endpoint config with unique names, creates or updates the endpoint, waits until it
    is InService and sends one real inference. Any failure deletes what this run created.
    """
    if not role:
        raise click.MissingParameter(
            "SageMaker needs an IAM role ARN: give --role ARN or set SAGEMAKER_ROLE",
            param_hint="'--role'", param_type="option",
        )
    try:
        config = DeployConfig(
            name=name, model_path=model_path, role=role, region=resolve_region(region),
            instance_type=instance_type, instance_count=instance_count, bucket=bucket,
            prefix=prefix, workers=workers, server_timeout=server_timeout, log_level=log_level,
            wait=wait, autoscale=Autoscale.parse(autoscale) if autoscale else None,
            endpoint_url=endpoint_url, poll_seconds=poll_seconds,
        )
        check_model_archive(config.model_path)
    except DeployConfigError as error:
        raise usage_error(error) from None
    started = time.monotonic()
    try:
        deploy(config, clients=clients_for(ctx, config.region, endpoint_url),
               progress=progress_printer(started))
    except DeployError as error:
        raise click_failure(error) from None
    state = "submitted" if not wait else "InService"
    click.echo(f"endpoint {name} {state} in {config.region} "
               f"({time.monotonic() - started:.0f} s); remove it with "
               f"`clearsight deploy sagemaker down --name {name}`", err=True)
    click.echo(name)


@sagemaker.command()
@_name_option
@click.option("--keep-model-data", is_flag=True, default=False, show_envvar=True,
              envvar="CLEARSIGHT_KEEP_MODEL_DATA",
              help="Keep the S3 model data this tool uploaded (default: delete it).")
@click.option("--bucket", show_envvar=True, envvar="CLEARSIGHT_S3_BUCKET", default=None,
              help="Bucket searched for model data no model refers to anymore. Default: "
                   "sagemaker-<region>-<account>.")
@click.option("--prefix", show_envvar=True, envvar="CLEARSIGHT_S3_PREFIX", default=DEFAULT_PREFIX,
              show_default=True, help="S3 key prefix.")
@aws_options
@click.pass_context
def down(ctx: click.Context, name: str, keep_model_data: bool, bucket: str | None, prefix: str,
         region: str | None, endpoint_url: str | None) -> None:
    """Delete endpoint NAME, its autoscaling, configs, models and model data. Idempotent."""
    try:
        validate_endpoint_name(name)
    except DeployConfigError as error:
        raise usage_error(error) from None
    region = resolve_region(region)
    try:
        report = teardown(name, clients_for(ctx, region, endpoint_url),
                          keep_model_data=keep_model_data, bucket=bucket, prefix=prefix)
    except DeployError as error:
        raise click_failure(error) from None
    if not report.removed:
        click.echo(f"nothing to remove for {name} in {region}")
    for item in report.removed:
        click.echo(f"removed {item}")


@sagemaker.command()
@_name_option
@aws_options
@click.pass_context
def status(ctx: click.Context, name: str, region: str | None, endpoint_url: str | None) -> None:
    """Print endpoint NAME's status, variants, models and autoscaling as JSON."""
    try:
        validate_endpoint_name(name)
    except DeployConfigError as error:
        raise usage_error(error) from None
    region = resolve_region(region)
    try:
        summary = endpoint_status(name, clients_for(ctx, region, endpoint_url))
    except DeployError as error:
        raise click_failure(error) from None
    click.echo(json.dumps(summary, indent=2))


@sagemaker.command(name="list")
@aws_options
@click.pass_context
def list_(ctx: click.Context, region: str | None, endpoint_url: str | None) -> None:
    """List the endpoints this tool created (tag clearsight:tool=clearsight): name, status, created."""
    region = resolve_region(region)
    try:
        endpoints = list_endpoints(clients_for(ctx, region, endpoint_url))
    except DeployError as error:
        raise click_failure(error) from None
    if not endpoints:  # on stderr: stdout stays one tab-separated line per endpoint, for scripts
        click.echo(f"no endpoints created by clearsight in {region}", err=True)
    for endpoint in endpoints:
        click.echo(f"{endpoint['name']}\t{endpoint['status']}\t{endpoint['created']}")


@sagemaker.command()
@_name_option
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--draw", "draw_dir", default=None, show_envvar=True, envvar="CLEARSIGHT_DRAW_DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Write each image with its boxes drawn to DIR/<stem>_boxes.jpeg. Default: off.")
@click.option("--min-score", default=0.0, show_default=True, show_envvar=True,
              envvar="CLEARSIGHT_MIN_SCORE", type=click.FloatRange(0, 1),
              help="Boxes below this score are not drawn (all are printed).")
@aws_options
@click.pass_context
def invoke(ctx: click.Context, name: str, images: tuple[Path, ...], draw_dir: Path | None,
           min_score: float, region: str | None, endpoint_url: str | None) -> None:
    """Send IMAGES to endpoint NAME (one application/x-npy request each); print JSON results.

    Detectors answer rows [class_id, score, x0, y0, x1, y1] with coordinates in 0..1.
    """
    try:
        validate_endpoint_name(name)
    except DeployConfigError as error:
        raise usage_error(error) from None
    region = resolve_region(region)
    pictures = []
    for path in images:
        # Pillow directly, not serving's decoder (the endpoint's: a request body within the request
        # limits, JPEG or PNG only, errors as HTTP statuses) nor explain's (deploy does not import
        # explain): a local file of any size or format, fitted to the request limit and drawn on.
        try:
            with Image.open(path) as picture:
                pictures.append(picture.convert("RGB"))
        except OSError as error:
            raise click.BadParameter(f"{path}: not an image ({error})", param_hint="IMAGES") from None
    arrays = []
    for path, picture in zip(images, pictures):
        fitted = fit_request(picture)
        if fitted.size != picture.size:
            click.echo(f"{path}: {picture.size[0]}x{picture.size[1]} is over SageMaker's "
                       f"{MAX_REQUEST_BYTES} byte request limit as .npy; sending it at "
                       f"{fitted.size[0]}x{fitted.size[1]} (boxes are relative, so they still fit)",
                       err=True)
        arrays.append(np.asarray(fitted, dtype=np.uint8))
    try:
        results = invoke_endpoint(name, arrays, clients_for(ctx, region, endpoint_url))
    except DeployError as error:
        raise click_failure(error) from None
    click.echo(json.dumps([{"image": str(path), "predictions": result}
                           for path, result in zip(images, results)], indent=2))
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
        for path, picture, result in zip(images, pictures, results):
            out = draw_dir / f"{path.stem}_boxes.jpeg"
            draw_detections(picture, result, min_score).save(out, quality=92)
            click.echo(f"wrote {out}", err=True)


def fit_request(picture: Any, limit: int = MAX_REQUEST_BYTES) -> Any:
    """``picture`` (PIL, RGB), downscaled if its (1, H, W, 3) uint8 ``.npy`` exceeds ``limit`` bytes."""
    width, height = picture.size
    payload = width * height * 3 + _NPY_HEADER_BYTES
    if payload <= limit:
        return picture
    scale = ((limit - _NPY_HEADER_BYTES) / (width * height * 3)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return picture.resize(size, resample=3)  # bicubic


def draw_detections(picture: Any, rows: list, min_score: float = 0.0) -> Any:
    """A copy of PIL image ``picture`` with rows ``[class_id, score, x0, y0, x1, y1]`` drawn.

    Coordinates are fractions of the width and height; rows that are not 6 numbers long
    (classifier output) are skipped.
    """
    canvas = picture.copy()
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    line = max(2, round(min(width, height) / 200))
    for row in rows:
        if not isinstance(row, list) or len(row) != 6 or row[1] < min_score:
            continue
        class_id, score, x0, y0, x1, y1 = row
        colour = _BOX_COLOURS[int(class_id) % len(_BOX_COLOURS)]
        box = (x0 * width, y0 * height, x1 * width, y1 * height)
        draw.rectangle(box, outline=colour, width=line)
        label = f"{int(class_id)}: {score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), label)
        draw.rectangle((left, top, right + 4, bottom + 2), fill=colour)
        draw.text((box[0] + 2, box[1]), label, fill="white")
    return canvas
