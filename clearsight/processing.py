"""SageMaker Processing jobs that run explain/ over an S3 prefix of images on N instances, and their merge.

The top layer: it composes deploy's AWS plumbing with explain's runner (the merge), which
deploy/ and explain/ themselves never import from each other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.aws_clients import check_bucket_owner, require_sagemaker_sdk
from deploy.aws_clients import error_text as _error_text
from deploy.aws_transaction import (
    META_RUN,
    META_TOOL,
    TAG_RUN,
    Transaction,
    created_by_run,
    delete_object_if_uploaded_by_run,
    describe_or_none,
)
from deploy.errors import DeployConfigError, DeployError
from explain.errors import ExplainError
from explain.runner import merge_outputs
from explain.sources import IMAGE_SUFFIXES
from serving.archive import tar_gz_bytes
from serving.contract import TASKS, is_endpoint_name

__all__ = [
    "ExplainJobConfig",
    "ProcessingJobFailed",
    "build_code_archive",
    "default_image_uri",
    "merge_job_outputs",
    "processing_job_request",
    "start_explain_job",
    "wait_for_job",
    "JOB_REQUIREMENTS",
]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("explain", "serving")  # what the worker imports (explain, and serving's wire contract)
PROCESSING_ROOT = "/opt/ml/processing"
IMAGES_DIR = f"{PROCESSING_ROOT}/input/images"
CODE_DIR = f"{PROCESSING_ROOT}/input/code"
OUTPUT_DIR = f"{PROCESSING_ROOT}/output"
CODE_ARCHIVE = "clearsight-code.tar.gz"
DEFAULT_INSTANCE_TYPE = "ml.c5.xlarge"
# The job's container: AWS's PyTorch 2.3 CPU training image has Python 3.11 (explain/ needs
# >= 3.10) and pip; the worker installs JOB_REQUIREMENTS into it at start (needs internet
# access from the job, the default unless the job runs in a VPC without a NAT gateway).
IMAGE_FRAMEWORK, IMAGE_VERSION, IMAGE_PY = "pytorch", "2.3", "py311"
JOB_REQUIREMENTS = (
    "numpy==1.23.5", "scipy==1.11.4", "scikit-image==0.22.0", "matplotlib==3.8.4",
    "pillow", "click", "tqdm", "requests", "boto3",
)
TAG_TOOL, TOOL = "clearsight:tool", "clearsight"
TAG_JOB = "clearsight:explain-job"
_ROLE = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")  # as deploy.config
_S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/.*)?")
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
_FINAL = {"Completed", "Failed", "Stopped"}
META_SHA256 = "clearsight-sha256"

Progress = Callable[[str], None]


class ProcessingJobFailed(DeployError):
    """The Processing job ended Failed or Stopped; the message carries SageMaker's FailureReason."""


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key.strip("/")


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
            raise DeployConfigError("endpoint", self.endpoint_name,
                                    "a SageMaker endpoint name: 1-63 letters, digits and hyphens")
        for name in ("images_url", "out_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _S3_URL.fullmatch(value):
                raise DeployConfigError(name.replace("_url", ""), value, "an S3 location s3://BUCKET/PREFIX")
        if _split_s3(self.out_url) == _split_s3(self.images_url):
            raise DeployConfigError("out", self.out_url, "an S3 prefix other than --images")
        if not isinstance(self.role, str) or not _ROLE.fullmatch(self.role):
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
        reserved = {"--endpoint", "--task", "--out", "--workers", "--shard", "--manifest-tag", "--no-report"}
        clashes = sorted(arg.split("=", 1)[0] for arg in self.explain_args if arg.split("=", 1)[0] in reserved)
        if clashes:
            raise DeployConfigError("explain_args", " ".join(self.explain_args),
                                    f"explain options other than {', '.join(clashes)} (the job sets them)")
        if not self.poll_seconds >= 0:
            raise DeployConfigError("poll_seconds", self.poll_seconds, "a number >= 0")

    @property
    def worker_arguments(self) -> list[str]:
        """ContainerArguments: the worker's options, then the explain options."""
        return ["--endpoint", f"sagemaker:{self.endpoint_name}", "--task", self.task, *self.explain_args]


def default_image_uri(region: str) -> str:
    """AWS's PyTorch 2.3 CPU training image (Python 3.11) in ``region``, from sagemaker.image_uris."""
    require_sagemaker_sdk("finding the Processing job's image")
    from sagemaker import image_uris  # the SageMaker SDK (the aws extra) takes seconds to import

    return image_uris.retrieve(IMAGE_FRAMEWORK, region, version=IMAGE_VERSION, py_version=IMAGE_PY,
                               instance_type=DEFAULT_INSTANCE_TYPE, image_scope="training")


def build_code_archive(repo: Path = REPO) -> tuple[bytes, str]:
    """(gzip tar bytes, sha256) of explain/, serving/ and requirements-job.txt; byte-for-byte reproducible."""
    members: list[tuple[str, bytes]] = []
    for package in CODE_PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            members.append((path.relative_to(repo).as_posix(), path.read_bytes()))
    members.append(("requirements-job.txt", ("\n".join(JOB_REQUIREMENTS) + "\n").encode()))
    compressed = tar_gz_bytes(members)
    return compressed, hashlib.sha256(compressed).hexdigest()


def _entrypoint() -> list[str]:
    """Unpack the code input, install its requirements, run the worker with the job's arguments."""
    script = (
        "set -e; mkdir -p /opt/clearsight; "
        f"tar -xzf {CODE_DIR}/{CODE_ARCHIVE} -C /opt/clearsight; "
        "python -m pip install --quiet --no-cache-dir -r /opt/clearsight/requirements-job.txt; "
        "cd /opt/clearsight; exec python -m explain.processing_worker "
        f"--input {IMAGES_DIR} --output {OUTPUT_DIR} \"$@\""
    )
    return ["bash", "-c", script, "clearsight-worker"]


def processing_job_request(config: ExplainJobConfig, image_uri: str, code_url: str,
                           run_id: str | None = None) -> dict[str, Any]:
    """The ``CreateProcessingJob`` parameters of ``config`` (code already uploaded to ``code_url``).

    ``run_id`` (the run starting the job) becomes the ``clearsight:run`` tag.
    """
    tags = [{"Key": TAG_TOOL, "Value": TOOL}, {"Key": TAG_JOB, "Value": config.job_name}]
    if run_id is not None:
        tags.append({"Key": TAG_RUN, "Value": run_id})
    return {
        "ProcessingJobName": config.job_name,
        "RoleArn": config.role,
        "AppSpecification": {"ImageUri": image_uri, "ContainerEntrypoint": _entrypoint(),
                             "ContainerArguments": config.worker_arguments},
        "ProcessingInputs": [
            {"InputName": "images", "S3Input": {
                "S3Uri": config.images_url, "LocalPath": IMAGES_DIR, "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "ShardedByS3Key"}},
            {"InputName": "code", "S3Input": {
                "S3Uri": code_url, "LocalPath": CODE_DIR, "S3DataType": "S3Prefix",
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


def _check_images(config: ExplainJobConfig, clients: Any, progress: Progress) -> None:
    """Raise DeployError when --images holds no jpg/jpeg/png object; warn about idle instances."""
    bucket, prefix = _split_s3(config.images_url)
    count = 0
    try:
        for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            count += sum(item["Key"].lower().endswith(IMAGE_SUFFIXES) for item in page.get("Contents", []))
            if count >= config.instance_count:
                break
    except Exception as error:  # noqa: BLE001
        raise DeployError(f"list-images: {_error_text(error)}") from error
    if count == 0:
        raise DeployError(f"no {'/'.join(IMAGE_SUFFIXES)} objects under {config.images_url}")
    if count < config.instance_count:
        progress(f"only {count} image(s) for {config.instance_count} instances: some will have nothing to do")


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
        reason = f"{step}: {_error_text(error)}"
    if leftovers:
        reason += "; clean-up left behind: " + "; ".join(leftovers)
    raise DeployError(reason) from error


def start_explain_job(config: ExplainJobConfig, clients: Any, progress: Progress = logger.info) -> str:
    """Check there are images, upload the code archive (skipped when S3 has it), create the job; returns its ARN.

    The --out bucket must be owned by the caller's account (ExpectedBucketOwner on every
    call). If anything fails (a refused call, a response lost after AWS acted, Ctrl-C),
    what this call created is removed: the code archive it uploaded is deleted and the job,
    if it was created, is stopped (SageMaker keeps stopped jobs in its list; they cost nothing).
    """
    _check_images(config, clients, progress)
    archive, digest = build_code_archive()
    bucket, prefix = _split_s3(config.out_url)
    code_key = f"{prefix}/code/{digest[:16]}/{CODE_ARCHIVE}".lstrip("/")
    code_url = f"s3://{bucket}/{code_key.rsplit('/', 1)[0]}"
    transaction = Transaction(progress)
    run_id = transaction.run_id
    step = "upload-code"
    try:
        if not check_bucket_owner(clients, bucket, hint="choose an --out bucket of your account"):
            raise DeployError(f"upload-code: S3 bucket {bucket} of --out does not exist")
        head = describe_or_none(lambda: clients.s3.head_object(Bucket=bucket, Key=code_key))
        if head is not None and head.get("Metadata", {}).get(META_SHA256) == digest:
            progress(f"code archive already in S3: s3://{bucket}/{code_key}")
        elif head is not None:
            raise DeployError(f"upload-code: s3://{bucket}/{code_key} exists with other content; "
                              "not overwriting it: choose another --out prefix")
        else:
            progress(f"uploading the code archive ({len(archive) / 1e3:.0f} kB) to s3://{bucket}/{code_key}")
            transaction.will_create(
                f"S3 object s3://{bucket}/{code_key}",
                lambda: delete_object_if_uploaded_by_run(clients.s3, bucket, code_key, run_id),
                f"aws s3 rm s3://{bucket}/{code_key}")
            clients.s3.put_object(Bucket=bucket, Key=code_key, Body=archive,
                                  Metadata={META_SHA256: digest, META_TOOL: TOOL, META_RUN: run_id},
                                  Tagging=f"{TAG_TOOL}={TOOL}")
        step = "create-processing-job"
        image_uri = config.image_uri or default_image_uri(config.region)
        request = processing_job_request(config, image_uri, code_url, run_id)
        sagemaker = clients.sagemaker
        describe = lambda: sagemaker.describe_processing_job(ProcessingJobName=config.job_name)  # noqa: E731
        if describe_or_none(describe) is not None:
            raise DeployError(f"create-processing-job: a processing job named {config.job_name} already "
                              "exists (names are unique per account and region and cannot be reused): "
                              "choose another --job-name")
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
            raise DeployError(f"describe-processing-job: {_error_text(error)}") from error
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


def merge_job_outputs(out_url: str, clients: Any, progress: Progress = logger.info,
                      keys: Sequence[str] | None = None) -> dict:
    """Merge the hosts' manifests under ``out_url`` into one analysis.json and report.html there."""
    bucket, prefix = _split_s3(out_url)
    base = f"{prefix}/" if prefix else ""
    with tempfile.TemporaryDirectory(prefix="clearsight-merge-") as folder:
        try:
            if not check_bucket_owner(clients, bucket, hint="give the --out of a job in your account"):
                raise DeployError(f"S3 bucket {bucket} does not exist")
            listed = clients.s3.list_objects_v2(Bucket=bucket, Prefix=base + "manifest")
            names = [item["Key"] for item in listed.get("Contents", [])
                     if "/" not in item["Key"][len(base):] and item["Key"].endswith(".jsonl")]
            for key in names:
                clients.s3.download_file(bucket, key, str(Path(folder) / key[len(base):]))
        except Exception as error:  # noqa: BLE001
            raise DeployError(f"download-manifests: {_error_text(error)}") from error
        progress(f"merging {len(names)} manifest(s) from {out_url}")
        try:
            summary = merge_outputs(folder, None, keys)
        except ExplainError as error:
            raise DeployError(f"merge: {error}") from None
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
    return summary
