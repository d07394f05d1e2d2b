"""SageMaker Processing jobs that run explain/ over an S3 prefix of images on N instances, and their merge.

The top layer: it composes deploy's AWS plumbing with explain's runner (the merge), which
deploy/ and explain/ themselves never import from each other.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from deploy.aws_clients import check_bucket_owner, error_text, require_sagemaker_sdk, split_s3_url
from deploy.aws_transaction import (
    META_RUN,
    META_TOOL,
    TAG_RUN,
    TAG_TOOL,
    TOOL,
    Transaction,
    created_by_run,
    delete_object_if_uploaded_by_run,
    describe_or_none,
)
from deploy.config import BUCKET_PATTERN, ROLE_PATTERN
from deploy.errors import DeployConfigError, DeployError
from deploy.sagemaker_names import META_SHA256
from explain.errors import ExplainError
from explain.manifest import (
    MANIFEST_GLOB,
    explained_entries,
    manifest_host,
    manifest_run,
    read_manifests,
)
from explain.runner import STAGING_PREFIX, merge_outputs
from explain.sources import IMAGE_SUFFIXES
from serving.contract import TASKS, is_endpoint_name

from .job_bundle import JOB_PYTHON, WHEELHOUSE_NAME, JobUploads, build_job_uploads

__all__ = [
    "ExplainJobConfig",
    "JOB_SET_OPTIONS",
    "ProcessingJobFailed",
    "check_s3_object",
    "default_image_uri",
    "entrypoint",
    "merge_job_outputs",
    "processing_job_request",
    "start_explain_job",
    "upload_urls",
    "wait_for_job",
]

logger = logging.getLogger(__name__)

PROCESSING_ROOT = "/opt/ml/processing"
IMAGES_DIR = f"{PROCESSING_ROOT}/input/images"
CODE_DIR = f"{PROCESSING_ROOT}/input/code"
WHEELHOUSE_DIR = f"{PROCESSING_ROOT}/input/wheelhouse"
OUTPUT_DIR = f"{PROCESSING_ROOT}/output"
JOB_HOME = "/opt/clearsight"  # the job's virtual environment and unpacked wheels
DEFAULT_INSTANCE_TYPE = "ml.c5.xlarge"
# The job's container: AWS's PyTorch 2.3 CPU training image, the image sagemaker.image_uris
# offers with CPython 3.11 (the Python of the tested pins, constraints.txt) on x86_64 Ubuntu
# 20.04. Torch is not used: the entry point installs the project wheel and the wheelhouse
# (clearsight.job_bundle) into a virtual environment of its own, offline.
IMAGE_FRAMEWORK, IMAGE_VERSION, IMAGE_PY = "pytorch", "2.3", "py311"
TAG_JOB = "clearsight:explain-job"
_S3_URL = re.compile(rf"s3://({BUCKET_PATTERN.pattern})(/.*)?")
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
_FINAL = {"Completed", "Failed", "Stopped"}
# explain options the job (or its worker) sets itself: refused after `--`, not taken from the environment
JOB_SET_OPTIONS = frozenset({"--endpoint", "--task", "--out", "--workers", "--shard", "--manifest-tag", "--no-report",
                             "--merged-by", "--allow-partial", "--job-name"})
# why each is not an explain option of the job's (review 35: "the job sets it" was untrue of --workers, --shard)
_WHY_JOB_SETS = {
    "--endpoint": "explain-job's own --endpoint names it", "--task": "explain-job's own --task",
    "--out": "explain-job's own --out", "--allow-partial": "explain-job's own --allow-partial",
    "--job-name": "explain-job's own --job-name",
    "--shard": "the job shares the images among its instances itself (explain-job --instance-count)",
    "--workers": "each instance runs one explain process (more machines: explain-job --instance-count; more "
                 "images at once: -- --images-in-flight)"}
_WORKER_SETS = "the job's worker sets it"
_JOB_OWN = frozenset({"--allow-partial", "--job-name"})  # explain-job options of the same name as explain's


def _bucket_hint(url: object) -> str:
    """Why an s3://BUCKET/... URL's bucket is not one (review 43: s3://b/p was refused as not s3://BUCKET/PREFIX)."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        return ""
    bucket = url[len("s3://"):].split("/", 1)[0]
    if BUCKET_PATTERN.fullmatch(bucket):
        return ""
    return (f" (bucket name {bucket!r} is not one: 3-63 lower-case letters, digits, dots and hyphens, beginning "
            "and ending with a letter or digit)")


def why_the_job_sets(option: str) -> str:
    """Why an explain option of JOB_SET_OPTIONS is not one the job takes: where its value comes from instead."""
    return _WHY_JOB_SETS.get(option, _WORKER_SETS)

# Endpoint statuses in which InvokeEndpoint answers: an update keeps the old variant serving until it ends.
_SERVING = ("InService", "Updating", "SystemUpdating")

Progress = Callable[[str], None]


class ProcessingJobFailed(DeployError):
    """The Processing job ended Failed or Stopped; the message carries SageMaker's FailureReason."""


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    """``s3://bucket/photos/`` -> ``("bucket", "photos")``: deploy's split, the prefix without edge slashes."""
    bucket, key = split_s3_url(url)
    return bucket, key.strip("/")


def _inside(url: str, folder_url: str) -> bool:
    """True when S3 location ``url`` is ``folder_url`` or lies in it, as folders do: ``s3://b/photos/x`` is in
    ``s3://b/photos``, ``s3://b/photos-private`` is not, and everything in ``b`` is in ``s3://b``."""
    (bucket, prefix), (folder_bucket, folder) = _bucket_and_prefix(url), _bucket_and_prefix(folder_url)
    return bucket == folder_bucket and (not folder or prefix == folder or prefix.startswith(folder + "/"))


def _refuse_overlap(images_url: str, out_url: str) -> None:
    """Raise DeployConfigError (about --out) when --out and --images are one prefix or one holds the other.

    Every object under --images is an input of the job (ShardedByS3Key: each instance gets its
    share, whatever the names), and the job writes its code, wheelhouse and explanations under
    --out: an --out inside --images makes them images of this job and of every later job on
    the same --images (a host given heat maps without the manifest that marks them explains
    them as photos); an --images inside --out mixes the job's images with its outputs and
    uploads. Prefixes are compared as folders, so ``photos`` and ``photos-private`` are apart.
    """
    images_bucket, images_prefix = _bucket_and_prefix(images_url)
    advice = (f"give --out a prefix outside --images, such as s3://{images_bucket}/{images_prefix}-explained"
              if images_prefix else "--images is a whole bucket: give --out a prefix in another bucket")
    if _inside(out_url, images_url):
        where = "is --images itself" if _inside(images_url, out_url) else f"lies inside --images {images_url}"
        raise DeployConfigError(
            "out", out_url, f"it {where}, and every object under --images is an image of the job (and of later "
            "jobs on the same --images): the job's code, wheelhouse and explanations would be explained as "
            f"images; {advice}")
    if _inside(images_url, out_url):
        raise DeployConfigError(
            "out", out_url, f"it holds --images {images_url}, and the job writes its code, wheelhouse and "
            f"explanations under --out, among those images; {advice}")


@dataclass(frozen=True)
class ExplainJobConfig:
    """One ``clearsight explain-job``, validated before any AWS call.

    images_url / out_url: s3://BUCKET/PREFIX of the images and of the explanations.
    endpoint_name: the SageMaker endpoint the workers call (``sagemaker:NAME``).
    explain_args: further ``python -m explain`` options (e.g. ``--num-samples 500``).
    image_uri: the container (default: ``default_image_uri(region)``).
    """

    job_name: str
    images_url: str
    endpoint_name: str
    out_url: str
    role: str
    region: str
    task: str = "detection"
    instance_count: int = 1
    instance_type: str = DEFAULT_INSTANCE_TYPE
    volume_size_gb: int = 30
    max_runtime_seconds: int = 86_400
    image_uri: str | None = None
    explain_args: tuple[str, ...] = field(default_factory=tuple)
    poll_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not is_endpoint_name(self.job_name):  # job names follow the endpoint-name rule
            raise DeployConfigError("job_name", self.job_name, "1-63 letters, digits and hyphens")
        if not is_endpoint_name(self.endpoint_name):
            prefix = "sagemaker:"  # how `clearsight explain` names one (review 43)
            hint = (f" (drop the {prefix} prefix: explain-job takes the endpoint's name)"
                    if isinstance(self.endpoint_name, str) and self.endpoint_name.startswith(prefix) else "")
            raise DeployConfigError("endpoint", self.endpoint_name,
                                    "a SageMaker endpoint name: 1-63 letters, digits and hyphens" + hint)
        for name in ("images_url", "out_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _S3_URL.fullmatch(value):
                raise DeployConfigError(name.replace("_url", ""), value, "an S3 location s3://BUCKET/PREFIX"
                                        + _bucket_hint(value))
        _refuse_overlap(self.images_url, self.out_url)
        if not isinstance(self.role, str) or not ROLE_PATTERN.fullmatch(self.role):
            raise DeployConfigError("role", self.role, "an IAM role ARN like arn:aws:iam::123456789012:role/NAME "
                                    "(option --role or env SAGEMAKER_ROLE)")
        if not self.region or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            raise DeployConfigError("region", self.region, "an AWS region such as us-east-1")
        if self.task not in TASKS:
            raise DeployConfigError("task", self.task, "detection or classification")
        for name, low, high in (("instance_count", 1, 100), ("volume_size_gb", 1, 16_384),
                                ("max_runtime_seconds", 1, 432_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise DeployConfigError(name, value, f"an integer in [{low}, {high}]")
        if not isinstance(self.instance_type, str) or not _INSTANCE_TYPE.fullmatch(self.instance_type):
            raise DeployConfigError("instance_type", self.instance_type, "an ml.* instance type such as ml.c5.xlarge")
        clashes = sorted({arg.split("=", 1)[0] for arg in self.explain_args} & JOB_SET_OPTIONS)
        if clashes:
            raise DeployConfigError("explain_args", " ".join(self.explain_args),
                                    "; ".join(f"leave out {option}: {why_the_job_sets(option)}"
                                              + (" (give it before --)" if option in _JOB_OWN else "")
                                              for option in clashes))
        if not self.poll_seconds >= 0:
            raise DeployConfigError("poll_seconds", self.poll_seconds, "a number >= 0")

    @property
    def worker_arguments(self) -> list[str]:
        """ContainerArguments: the worker's options (the job's name names its manifests), then the explain options."""
        return ["--job-name", self.job_name, "--endpoint", f"sagemaker:{self.endpoint_name}", "--task", self.task,
                *self.explain_args]


def default_image_uri(region: str) -> str:
    """AWS's PyTorch 2.3 CPU training image (Python 3.11) in ``region``, from sagemaker.image_uris."""
    require_sagemaker_sdk("finding the Processing job's image")
    from sagemaker import image_uris  # the SageMaker SDK (the aws extra) takes seconds to import

    return image_uris.retrieve(IMAGE_FRAMEWORK, region, version=IMAGE_VERSION, py_version=IMAGE_PY,
                               instance_type=DEFAULT_INSTANCE_TYPE, image_scope="training")


def upload_urls(config: ExplainJobConfig, uploads: JobUploads) -> tuple[str, str]:
    """The S3 URLs of the job's two uploads under --out, content-addressed:
    ``<out>/code/<sha256>/<wheel>`` and ``<out>/wheelhouse/<sha256>/clearsight-wheelhouse.tar``."""
    bucket, prefix = _bucket_and_prefix(config.out_url)
    base = f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
    return (f"{base}code/{uploads.code_sha256}/{uploads.code.name}",
            f"{base}wheelhouse/{uploads.wheelhouse_sha256}/{WHEELHOUSE_NAME}")


def entrypoint(uploads: JobUploads) -> list[str]:
    """The job's ContainerEntrypoint: check both uploads' sha256, install them offline, run the worker.

    A bash script; nothing is installed unless both files have the sha256 the job was created
    for. The paths follow env CLEARSIGHT_PROCESSING_ROOT (default /opt/ml/processing) and
    CLEARSIGHT_JOB_HOME (default /opt/clearsight), so a test can lay the job out anywhere.
    pip installs with --no-index from the wheelhouse alone; the container needs bash, tar,
    sha256sum and a python3 of CPython 3.11 with the venv module, and no network.
    """
    wheel = shlex.quote(uploads.code.name)
    version = tuple(int(part) for part in JOB_PYTHON.split("."))
    script = f"""set -euo pipefail
root="${{CLEARSIGHT_PROCESSING_ROOT:-{PROCESSING_ROOT}}}"
home="${{CLEARSIGHT_JOB_HOME:-{JOB_HOME}}}"
fail() {{ echo "clearsight-worker: $*" >&2; exit 3; }}
verify() {{
  [ -f "$1" ] || fail "$1 is missing: the job's $2 input did not arrive"
  actual="$(sha256sum "$1" | cut -d " " -f 1)"
  [ "$actual" = "$3" ] || fail "$1 has sha256 $actual, but this job was created for $3: the upload was \
changed or damaged after the job was defined; nothing was installed. Start a new job (explain-job uploads it again)"
}}
verify "$root/input/code/{wheel}" code {uploads.code_sha256}
verify "$root/input/wheelhouse/{WHEELHOUSE_NAME}" wheelhouse {uploads.wheelhouse_sha256}
python3 -c 'import sys; sys.exit(sys.version_info[:2] != {version!r})' || fail "the image's python3 is \
$(python3 -V 2>&1); the wheelhouse is for CPython {JOB_PYTHON} on x86_64 Linux: give --image-uri an image with it"
mkdir -p "$home/wheels"
tar -xf "$root/input/wheelhouse/{WHEELHOUSE_NAME}" -C "$home/wheels"
python3 -m venv "$home/venv"
"$home/venv/bin/python" -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \\
  --find-links "$home/wheels" -c "$home/wheels/constraints.txt" "$root/input/code/{wheel}"
exec "$home/venv/bin/python" -m explain.processing_worker --input "$root/input/images" \\
  --output "$root/output" "$@"
"""
    return ["bash", "-c", script, "clearsight-worker"]


def _folder_url(url: str) -> str:
    """``s3://bucket/photos`` -> ``s3://bucket/photos/``: an S3Prefix input would also take photos2/..."""
    return url if url.endswith("/") else url + "/"


def processing_job_request(config: ExplainJobConfig, image_uri: str, uploads: JobUploads,
                           run_id: str | None = None) -> dict[str, Any]:
    """The ``CreateProcessingJob`` parameters of ``config`` (``uploads`` already at ``upload_urls``).

    ``run_id`` (the run starting the job) becomes the ``clearsight:run`` tag.
    """
    tags = [{"Key": TAG_TOOL, "Value": TOOL}, {"Key": TAG_JOB, "Value": config.job_name}]
    if run_id is not None:
        tags.append({"Key": TAG_RUN, "Value": run_id})
    code_url, wheelhouse_url = upload_urls(config, uploads)
    return {
        "ProcessingJobName": config.job_name,
        "RoleArn": config.role,
        "AppSpecification": {"ImageUri": image_uri, "ContainerEntrypoint": entrypoint(uploads),
                             "ContainerArguments": config.worker_arguments},
        "ProcessingInputs": [
            {"InputName": "images", "S3Input": {
                "S3Uri": _folder_url(config.images_url), "LocalPath": IMAGES_DIR, "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "ShardedByS3Key"}},
            {"InputName": "code", "S3Input": {
                "S3Uri": code_url, "LocalPath": CODE_DIR, "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}},
            {"InputName": "wheelhouse", "S3Input": {
                "S3Uri": wheelhouse_url, "LocalPath": WHEELHOUSE_DIR, "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}},
        ],
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": "explanations", "S3Output": {
                "S3Uri": config.out_url, "LocalPath": OUTPUT_DIR, "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": config.instance_count, "InstanceType": config.instance_type,
            "VolumeSizeInGB": config.volume_size_gb}},
        "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_seconds},
        "Environment": {"AWS_DEFAULT_REGION": config.region, "PYTHONUNBUFFERED": "1"},
        "Tags": tags,
    }


def default_job_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return "clearsight-explain-" + now.strftime("%Y%m%d-%H%M%S")


def _check_endpoint(config: ExplainJobConfig, clients: Any) -> None:
    """Raise DeployError unless endpoint --endpoint exists in the region and answers (DescribeEndpoint).

    Checked before anything is uploaded or created: a misspelt name otherwise starts a billed
    job whose every instance pulls the image, installs, and then fails each image.
    """
    where = f"endpoint {config.endpoint_name} in {config.region}"
    try:
        described = describe_or_none(
            lambda: clients.sagemaker.describe_endpoint(EndpointName=config.endpoint_name))
    except Exception as error:  # noqa: BLE001 - access denied, no network: name the step
        raise DeployError(f"check-endpoint: cannot describe {where}: {error_text(error)}") from error
    if described is None:
        raise DeployError(f"check-endpoint: {where} not found: nothing was uploaded or started; check "
                          "--endpoint and --region (`clearsight deploy sagemaker list` shows clearsight's "
                          "endpoints)")
    status = described.get("EndpointStatus", "unknown")
    if status not in _SERVING:
        reason = f" ({described['FailureReason']})" if described.get("FailureReason") else ""
        raise DeployError(f"check-endpoint: {where} is {status}{reason}, not InService: nothing was uploaded or "
                          "started; run again once it is InService (`clearsight deploy sagemaker status "
                          f"--name {config.endpoint_name}`)")


def _name_taken(config: ExplainJobConfig) -> str:
    return (f"a processing job named {config.job_name} already exists in {config.region} (names are unique per "
            "account and region and cannot be reused)")


def _check_job_name(config: ExplainJobConfig, clients: Any) -> None:
    """Raise DeployError when a processing job named --job-name exists (DescribeProcessingJob), before the
    uploads: CreateProcessingJob would refuse the name only after the wheel and the 115 MB wheelhouse are in S3."""
    try:
        described = describe_or_none(
            lambda: clients.sagemaker.describe_processing_job(ProcessingJobName=config.job_name))
    except Exception as error:  # noqa: BLE001 - access denied, no network: name the step
        raise DeployError(f"check-job-name: cannot describe processing job {config.job_name} in {config.region}: "
                          f"{error_text(error)}") from error
    if described is not None:
        raise DeployError(f"check-job-name: {_name_taken(config)}: nothing was uploaded or started; choose "
                          "another --job-name")


def check_s3_object(url: str, clients: Any, what: str) -> None:
    """Raise DeployError unless S3 object ``url`` (s3://BUCKET/KEY) exists and this account can read it
    (HeadObject), before anything is uploaded or started: a job would otherwise fail on every instance."""
    bucket, key = split_s3_url(url)
    try:
        head = describe_or_none(lambda: clients.s3.head_object(Bucket=bucket, Key=key))
    except Exception as error:  # noqa: BLE001 - access denied, no network: name the object
        raise DeployError(f"check-s3-object: cannot read {what} {url}: {error_text(error)}") from error
    if head is None:
        raise DeployError(f"check-s3-object: {what} {url} not found: nothing was uploaded or started")


def _check_images(config: ExplainJobConfig, clients: Any, progress: Progress) -> None:
    """Raise DeployError when --images holds no jpg/jpeg/png object; warn about idle instances."""
    bucket, prefix = _bucket_and_prefix(config.images_url)
    prefix = f"{prefix}/" if prefix else ""  # the folder: never photos2/ for s3://bucket/photos
    count = 0
    try:
        for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            count += sum(item["Key"].lower().endswith(IMAGE_SUFFIXES) for item in page.get("Contents", []))
            if count >= config.instance_count:
                break
    except Exception as error:  # noqa: BLE001
        raise DeployError(f"list-images: cannot list {config.images_url}: {error_text(error)}") from error
    if count == 0 and prefix.lower().endswith(tuple(suffix + "/" for suffix in IMAGE_SUFFIXES)):
        raise DeployError(f"no {'/'.join(IMAGE_SUFFIXES)} objects under s3://{bucket}/{prefix}: --images is a "
                          "prefix (a folder of images), not one image: give its folder, or run `clearsight "
                          "explain` on one image")
    if count == 0:
        raise DeployError(f"no {'/'.join(IMAGE_SUFFIXES)} objects under {config.images_url}")
    if count < config.instance_count:
        progress(f"only {count} image(s) for {config.instance_count} instances: some will have nothing to do")


def _check_out_bucket(config: ExplainJobConfig, clients: Any) -> None:
    """Raise DeployError unless the bucket of --out exists and the caller's account owns it."""
    bucket, _ = _bucket_and_prefix(config.out_url)
    try:
        exists = check_bucket_owner(clients, bucket, hint="choose an --out bucket of your account")
    except DeployError:
        raise
    except Exception as error:  # noqa: BLE001 - no network, no credentials: one line
        raise DeployError(f"upload-code: {error_text(error)}") from error
    if not exists:
        raise DeployError(f"upload-code: S3 bucket {bucket} of --out does not exist")


def _raise_rolled_back(step: str, error: BaseException, transaction: Transaction) -> None:
    """Roll ``transaction`` back after ``error`` in ``step``.

    Returns (the caller re-raises ``error``) when everything was removed and ``error`` is a
    DeployError or Ctrl-C; otherwise raises DeployError naming the step and what is left.
    """
    leftovers = transaction.roll_back()
    if not leftovers and isinstance(error, (DeployError, KeyboardInterrupt)):
        return
    if isinstance(error, DeployError):
        reason = str(error)
    elif isinstance(error, KeyboardInterrupt):
        reason = f"{step}: interrupted (Ctrl-C)"
    else:
        reason = f"{step}: {error_text(error)}"
    if leftovers:
        reason += "; clean-up left behind: " + "; ".join(leftovers)
    raise DeployError(reason) from error


def _upload_once(clients: Any, url: str, path: Path, digest: str, transaction: Transaction,
                 progress: Progress) -> None:
    """Upload ``path`` to ``url`` (S3) unless an object with the same sha256 is there; refuse other content."""
    bucket, key = split_s3_url(url)
    head = describe_or_none(lambda: clients.s3.head_object(Bucket=bucket, Key=key))
    if head is not None and head.get("Metadata", {}).get(META_SHA256) == digest:
        progress(f"already in S3: {url}")
        return
    if head is not None:
        raise DeployError(f"upload-code: {url} exists with other content; not overwriting it: choose "
                          "another --out prefix")
    progress(f"uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB) to {url}")
    run_id = transaction.run_id
    transaction.will_create(f"S3 object {url}",
                            lambda: delete_object_if_uploaded_by_run(clients.s3, bucket, key, run_id),
                            f"aws s3 rm {url}")
    with open(path, "rb") as body:  # one PUT (up to 5 GB): the wheelhouse is about 115 MB
        clients.s3.put_object(Bucket=bucket, Key=key, Body=body,
                              Metadata={META_SHA256: digest, META_TOOL: TOOL, META_RUN: run_id},
                              Tagging=f"{TAG_TOOL}={TOOL}")


def start_explain_job(config: ExplainJobConfig, clients: Any, progress: Progress = logger.info,
                      uploads: JobUploads | None = None) -> str:
    """Check the endpoint and the images, upload the wheel and wheelhouse (skipped when S3 has them), create the job.

    Returns the job's ARN. ``uploads``: default ``build_job_uploads()`` (built once, then
    cached under build/job). Both go to content-addressed keys (``upload_urls``) and the job's
    entry point checks their sha256 before installing anything. The --out bucket must be
    owned by the caller's account (ExpectedBucketOwner on every call). If anything fails (a
    refused call, a response lost after AWS acted, Ctrl-C), what this call created is
    removed: the files it uploaded are deleted and the job, if it was created, is stopped
    (SageMaker keeps stopped jobs in its list; they cost nothing). Before anything is
    uploaded, endpoint --endpoint must exist in the region and be InService (or Updating,
    which keeps serving), and no processing job may have the job's name.
    """
    _check_endpoint(config, clients)
    _check_job_name(config, clients)
    _check_images(config, clients, progress)
    _check_out_bucket(config, clients)  # before the wheel is built and the wheelhouse downloaded
    uploads = uploads or build_job_uploads(progress=progress)
    transaction = Transaction(progress)
    run_id = transaction.run_id
    step = "upload-code"
    try:
        code_url, wheelhouse_url = upload_urls(config, uploads)
        _upload_once(clients, code_url, uploads.code, uploads.code_sha256, transaction, progress)
        _upload_once(clients, wheelhouse_url, uploads.wheelhouse, uploads.wheelhouse_sha256, transaction, progress)
        step = "create-processing-job"
        image_uri = config.image_uri or default_image_uri(config.region)
        request = processing_job_request(config, image_uri, uploads, run_id)
        sagemaker = clients.sagemaker
        describe = lambda: sagemaker.describe_processing_job(ProcessingJobName=config.job_name)  # noqa: E731
        if describe_or_none(describe) is not None:  # taken during the uploads (checked before them too)
            raise DeployError(f"create-processing-job: {_name_taken(config)}: choose another --job-name")
        transaction.will_create(
            f"processing job {config.job_name}",
            lambda: _stop_job_of_run(sagemaker, run_id, describe),
            f"aws sagemaker stop-processing-job --processing-job-name {config.job_name} "
            f"--region {config.region}")
        arn = sagemaker.create_processing_job(**request)["ProcessingJobArn"]
    except BaseException as error:  # noqa: BLE001 - a refused call, a lost response, Ctrl-C: undo
        _raise_rolled_back(step, error, transaction)
        raise
    transaction.commit()
    progress(f"processing job {config.job_name} created: {config.instance_count} x {config.instance_type}, "
             f"image {image_uri}")
    return arn


def _stop_job_of_run(sagemaker: Any, run_id: str, describe: Callable[[], dict]) -> bool:
    """Stop the job if run ``run_id`` created it and it is running; a job cannot be deleted, a stopped one costs nothing."""
    described = describe_or_none(describe)
    if described is None or not created_by_run(sagemaker, described["ProcessingJobArn"], run_id):
        return False
    if described["ProcessingJobStatus"] != "InProgress":
        return False
    sagemaker.stop_processing_job(ProcessingJobName=described["ProcessingJobName"])
    return True


def wait_for_job(job_name: str, clients: Any, poll_seconds: float = 30.0,
                 progress: Progress = logger.info, timeout_seconds: float | None = None) -> dict:
    """Poll ``describe_processing_job`` until Completed; raise ProcessingJobFailed on Failed/Stopped."""
    started, last_status = time.monotonic(), None
    while True:
        try:
            description = clients.sagemaker.describe_processing_job(ProcessingJobName=job_name)
        except Exception as error:  # noqa: BLE001
            raise DeployError(f"describe-processing-job: {error_text(error)}") from error
        status = description["ProcessingJobStatus"]
        if status != last_status:
            progress(f"processing job {job_name}: {status}")
            last_status = status
        if status in _FINAL:
            if status != "Completed":
                reason = description.get("FailureReason") or description.get("ExitMessage") or "no reason given"
                raise ProcessingJobFailed(f"processing job {job_name} ended {status}: {reason}")
            return description
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise DeployError(f"processing job {job_name} still {status} after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def _run_text(run: str | None) -> str:
    return f"job {run}" if run else "manifests without a job name"


def _list_outputs(clients: Any, bucket: str, base: str) -> dict[str, Any]:
    """The objects directly under ``base`` (not in its code/ and wheelhouse/ folders): name -> LastModified."""
    objects = {}
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base, Delimiter="/"):
        for item in page.get("Contents", []):
            objects[item["Key"][len(base):]] = item["LastModified"]
    return objects


def _check_job(clients: Any, job_name: str | None, manifests: list[str], out_url: str,
               progress: Progress) -> dict:
    """What SageMaker says of job ``job_name`` (DescribeProcessingJob) against the hosts whose ``manifests``
    are under ``out_url``; each problem is also said through ``progress`` as a WARNING line.

    Returns {"job", "status", "instances", "created", "ended", "missing_hosts", "problems"} (a job SageMaker cannot
    describe: status None, no problems: the merge goes on as without a check). A job's hosts
    are algo-1..algo-N, and each writes its manifest, empty when it had no images.
    """
    check = {"job": job_name, "status": None, "instances": None, "created": None, "ended": None,
             "missing_hosts": [], "problems": []}
    if job_name is None:
        return check
    try:
        described = describe_or_none(
            lambda: clients.sagemaker.describe_processing_job(ProcessingJobName=job_name))
    except Exception as error:  # noqa: BLE001 - no permission, no network: merge as without a check
        progress(f"cannot describe processing job {job_name} ({error_text(error)}): merging its manifests "
                 "without checking that the job completed and that every host's outputs are there")
        return check
    if described is None:
        progress(f"processing job {job_name} is not known to SageMaker in this region (deleted, or another "
                 "region or account): merging its manifests without checking that the job completed and that "
                 "every host's outputs are there")
        return check
    status = described["ProcessingJobStatus"]
    count = described.get("ProcessingResources", {}).get("ClusterConfig", {}).get("InstanceCount") or 0
    present = {manifest_host(name) for name in manifests}
    missing = [f"algo-{index}" for index in range(1, count + 1) if f"algo-{index}" not in present]
    check.update(status=status, instances=count, created=described.get("CreationTime"),
                 ended=described.get("ProcessingEndTime"), missing_hosts=missing)
    if status != "Completed":
        reason = described.get("FailureReason") or described.get("ExitMessage")
        check["problems"].append(
            f"processing job {job_name} is {status}{f' ({reason})' if reason else ''}, not Completed: "
            + ("merge again once it has ended" if status in ("InProgress", "Stopping")
               else "its hosts may not have finished their images"))
    if missing:
        check["problems"].append(
            f"{len(missing)} of the job's {count} host(s) wrote no manifest to {out_url} ({', '.join(missing)}): "
            "their images are not in this report")
    for problem in check["problems"]:
        progress(f"WARNING: {problem}")
    return check


def _unfinished_files(clients: Any, bucket: str, base: str, check: dict,
                      finished: set[str]) -> tuple[list[str], list[str]]:
    """Files under ``base`` in staging folders (``.staging-<pid>@<host>-*/``): images a worker was writing
    when it stopped, uploaded with the rest of its output. Staging names carry no job, so a file is the
    job's only when it was written while the job ran (``check``'s created .. ended, a minute of slack
    for the upload) and is not the name of a file of an image the job finished (``finished``). Returns
    (the job's, the others); a job SageMaker could not describe (no ``created``) owns none."""
    start, end = check.get("created"), check.get("ended")
    mine, others = [], []
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base + STAGING_PREFIX):
        for item in page.get("Contents", []):
            name, written = item["Key"][len(base):], item["LastModified"]
            # S3 keeps whole seconds: a second of slack keeps a file of the job's first second its own
            during = (start is not None and written >= start - dt.timedelta(seconds=1)
                      and (end is None or written <= end + dt.timedelta(minutes=1)))
            (mine if during and PurePosixPath(name).name not in finished else others).append(name)
    return sorted(mine), sorted(others)


def _some(names: list[str], count: int = 5) -> str:
    """The first ``count`` of ``names``, comma-separated, with ", ..." when there are more."""
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def _refuse_outputs_written_over(job_name: str | None, runs: dict[str | None, list[str]],
                                 other_runs: dict[str | None, list[dict]], objects: dict[str, Any],
                                 entries: list[dict], out_url: str) -> None:
    """Raise DeployError when a run whose manifests are newer than ``job_name``'s explained some of the
    same images: their files under the prefix are that run's now, and a report of this job would show them."""
    written = max(objects[name] for name in runs[job_name])
    mine = set(explained_entries(entries))
    for run, run_entries in other_runs.items():
        if max(objects[name] for name in runs[run]) <= written:
            continue
        again = sorted(mine & set(explained_entries(run_entries)))
        if again:
            raise DeployError(
                f"merge: {len(again)} image(s) of {_run_text(job_name)} ({', '.join(again[:3])}"
                f"{', ...' if len(again) > 3 else ''}) were explained again by a later run in {out_url} "
                f"({_run_text(run)}), whose files replaced this job's there: merge the latest job, or give each "
                "job its own --out prefix")


def merge_job_outputs(out_url: str, clients: Any, progress: Progress = logger.info,
                      keys: Sequence[str] | None = None, job_name: str | None = None) -> dict:
    """Merge one job's manifests under ``out_url`` into one analysis.json and report.html there.

    Each job's hosts write ``manifest-<job>@<host>.jsonl`` (``explain.manifest.run_manifest_tag``),
    so jobs sharing the prefix keep their own manifests. ``job_name``: the job to merge (default:
    the one whose manifests were written last; manifests without a job name, from a worker run
    without one, count as one run). The other runs' manifests are not merged: the summary's
    ``totals.other_runs`` says what of theirs is still under the prefix, and a failed image of
    this job that an earlier job explained lists those files (``files_from_earlier_run``).

    The job is checked with DescribeProcessingJob: the summary returned (not analysis.json) has
    ``job_check``: job, status, instances, missing_hosts (algo-K without a manifest), problems
    (a job not Completed, missing hosts, files a worker of the job left in staging folders when it
    stopped: each also a WARNING line of ``progress``, and analysis.json's ``totals.incomplete``) and
    unfinished_files (those files; staging files written outside the job's run, of images it
    finished, or under a job SageMaker cannot describe are named in a line of their own).
    A job SageMaker cannot describe is merged as found, with one line saying so.
    """
    bucket, prefix = _bucket_and_prefix(out_url)
    base = f"{prefix}/" if prefix else ""
    with tempfile.TemporaryDirectory(prefix="clearsight-merge-") as folder:
        try:
            if not check_bucket_owner(clients, bucket, hint="give the --out of a job in your account"):
                raise DeployError(f"S3 bucket {bucket} does not exist")
            objects = _list_outputs(clients, bucket, base)
        except Exception as error:  # noqa: BLE001
            raise DeployError(f"download-manifests: {error_text(error)}") from error
        manifests = sorted(name for name in objects if Path(name).match(MANIFEST_GLOB))
        if not manifests:
            raise DeployError(f"merge: no manifest*.jsonl in {out_url}: nothing to merge (did a job write there?)")
        runs: dict[str | None, list[str]] = {}
        for name in manifests:
            runs.setdefault(manifest_run(name), []).append(name)
        if job_name is None:
            job_name = max(runs, key=lambda run: (max(objects[name] for name in runs[run]), run or ""))
        elif job_name not in runs:
            raise DeployError(f"merge: no manifest of job {job_name} in {out_url} (it holds "
                              + "; ".join(f"{_run_text(run)}: {len(names)}" for run, names in runs.items())
                              + "): did that job write there, and has it ended?")
        others = Path(folder) / "other-runs"
        others.mkdir()
        try:
            for run, names in runs.items():
                for name in names:
                    into = Path(folder) if run == job_name else others / (run or "_unnamed")
                    into.mkdir(exist_ok=True)
                    clients.s3.download_file(bucket, base + name, str(into / name))
        except Exception as error:  # noqa: BLE001
            raise DeployError(f"download-manifests: {error_text(error)}") from error
        other_runs = {run: read_manifests(others / (run or "_unnamed")) for run in runs if run != job_name}
        entries = read_manifests(Path(folder))
        _refuse_outputs_written_over(job_name, runs, other_runs, objects, entries, out_url)
        progress(f"merging {len(runs[job_name])} manifest(s) of {_run_text(job_name)} from {out_url}"
                 + (f"; leaving out those of {len(other_runs)} other run(s) there ("
                    + ", ".join(_run_text(run) for run in other_runs) + ")" if other_runs else ""))
        check = _check_job(clients, job_name, runs[job_name], out_url, progress)
        finished = {name for entry in explained_entries(entries).values() for name in entry.get("files", [])}
        try:
            check["unfinished_files"], others = _unfinished_files(clients, bucket, base, check, finished)
        except Exception as error:  # noqa: BLE001
            raise DeployError(f"list-outputs: {error_text(error)}") from error
        if check["unfinished_files"]:  # images missing from this report: a problem, as a missing host is
            problem = (f"{len(check['unfinished_files'])} file(s) of unfinished images under {out_url}, which a "
                       f"worker was writing when it stopped (not in this report): {_some(check['unfinished_files'])}")
            check["problems"].append(problem)
            progress(f"WARNING: {problem}")
        if others:
            whose = ("whose they are is not known: SageMaker cannot describe the job" if check["created"] is None
                     else f"written outside job {job_name}'s run, or of images it finished: not this job's")
            progress(f"{len(others)} file(s) under {out_url} in staging folders of a run stopped while writing "
                     f"them ({whose}): {_some(others)}")
        try:
            summary = merge_outputs(folder, None, keys, output_exists=objects.__contains__, other_runs=other_runs,
                                    incomplete=check["problems"])
        except ExplainError as error:  # its messages name the download folder: name the S3 location
            raise DeployError(f"merge: {str(error).replace(folder, out_url)}") from None
        transaction = Transaction(progress)
        try:
            for name, content_type in (("analysis.json", "application/json"), ("report.html", "text/html")):
                key = base + name
                transaction.will_create(
                    f"S3 object s3://{bucket}/{key}",
                    lambda key=key: delete_object_if_uploaded_by_run(clients.s3, bucket, key, transaction.run_id),
                    f"aws s3 rm s3://{bucket}/{key}")
                clients.s3.upload_file(str(Path(folder) / name), bucket, key, ExtraArgs={
                    "ContentType": content_type,
                    "Metadata": {META_TOOL: TOOL, META_RUN: transaction.run_id}})
        except BaseException as error:  # noqa: BLE001 - both files or neither
            _raise_rolled_back("upload-report", error, transaction)
            raise
        transaction.commit()
    progress(f"wrote {out_url.rstrip('/')}/analysis.json and report.html "
             f"({summary['totals']['images']} image(s))")
    return {**summary, "job_check": check}
