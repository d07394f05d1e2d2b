"""Fixtures for the SageMaker deploy tests: one moto server per module, fake credentials, a call log.

Where moto is more lenient than AWS, a botocore hook makes it answer as AWS does: names of
SageMaker resources are unique, S3 enforces ExpectedBucketOwner, UpdateEndpoint exists,
DescribeProcessingJob answers the job's ProcessingResources.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
BUCKET = "clearsight-test-models"


@dataclass
class Aws:
    """A moto account: URL, a boto3 session with hooks, the clients deploy uses, and every call made."""

    url: str
    session: object
    clients: object
    role_arn: str
    bucket: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    s3_requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    region = REGION
    account = ACCOUNT

    @staticmethod
    def model_archive(path: Path, marker: str = "v1", weight_bytes: int = 0) -> Path:
        """A minimal model.tar.gz (see ``write_model_archive``)."""
        return write_model_archive(path, marker, weight_bytes)

    def set_runtime_results(self, *bodies: object) -> None:
        """Queue moto's canned InvokeEndpoint replies (JSON bodies), answered in order."""
        results = [{"Body": json.dumps(body), "ContentType": "application/json"} for body in bodies]
        request = urllib.request.Request(
            f"{self.url}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps({"results": results}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).read()

    def serving_endpoint(self, name: str, status: str | None = None, failure_reason: str | None = None) -> None:
        """Model, config and endpoint ``name`` made with a plain client (not in ``calls``): InService in moto,
        or ``status`` (with ``failure_reason``) set in moto's backend."""
        from moto.sagemaker.models import sagemaker_backends

        sagemaker = self.client("sagemaker")
        sagemaker.create_model(ModelName=name, ExecutionRoleArn=self.role_arn,
                               PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{self.bucket}/model.tar.gz"})
        sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        if status is not None:
            endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[name]
            endpoint.endpoint_status, endpoint.failure_reason = status, failure_reason

    def client(self, service: str, account: str | None = None):
        """A plain boto3 client on moto (none of the hooks); ``account`` acts as that moto account."""
        import boto3

        client = boto3.client(service, endpoint_url=self.url, region_name=REGION)
        if account is not None:
            client.meta.events.register("before-sign", lambda request, **kwargs: request.headers.__setitem__(
                "x-moto-account-id", account))
        return client

    def state(self) -> dict[str, dict]:
        """Everything in the moto account, with what a change would alter (tags, config, ETag, status).

        SageMaker models, configs, endpoints, processing jobs; S3 buckets, objects and multipart
        uploads not completed or aborted (all accounts); Application Auto Scaling targets and
        policies; CloudWatch alarms.
        """
        from moto.s3.models import s3_backends

        sagemaker, autoscaling = self.clients.sagemaker, self.clients.autoscaling

        def tags(arn):
            return tuple(sorted((t["Key"], t["Value"]) for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]))

        models = {m["ModelName"]: tags(m["ModelArn"]) for m in sagemaker.list_models()["Models"]}
        configs = {c["EndpointConfigName"]: tags(c["EndpointConfigArn"])
                   for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]}
        endpoints = {}
        for item in sagemaker.list_endpoints()["Endpoints"]:
            described = sagemaker.describe_endpoint(EndpointName=item["EndpointName"])
            endpoints[item["EndpointName"]] = (described["EndpointConfigName"],
                                               described["EndpointStatus"], tags(item["EndpointArn"]))
        jobs = {j["ProcessingJobName"]: j["ProcessingJobStatus"]
                for j in sagemaker.list_processing_jobs()["ProcessingJobSummaries"]}
        objects, buckets, uploads = {}, {}, {}
        for name, (_, account) in list(s3_backends.bucket_accounts.items()):
            buckets[name] = account
            bucket = s3_backends[account]["aws"].buckets.get(name)
            for key, value in (bucket.keys.items() if bucket else ()):
                objects[f"{name}/{key}"] = value.etag
            if bucket:  # each pending upload's parts are stored, and billed, until it is aborted
                listed = self.client("s3", account).list_multipart_uploads(Bucket=name)
                for upload in listed.get("Uploads", []):
                    uploads[f"{name}/{upload['Key']}#{upload['UploadId']}"] = upload["Initiated"]
        targets = {t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"]) for t in
                   autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]}
        policies = sorted(p["PolicyName"] for p in
                          autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"])
        alarms = sorted(a["AlarmName"] for a in self.client("cloudwatch").describe_alarms()["MetricAlarms"])
        return {"models": models, "configs": configs, "endpoints": endpoints, "jobs": jobs,
                "buckets": buckets, "objects": objects, "uploads": uploads, "targets": targets,
                "policies": policies, "alarms": alarms}

    def leftovers(self) -> dict[str, list[str]]:
        """Every model, endpoint config and endpoint in the account, and the tool's S3 objects."""
        sagemaker, s3 = self.clients.sagemaker, self.clients.s3
        objects = []
        for bucket in s3.list_buckets()["Buckets"]:
            listed = s3.list_objects_v2(Bucket=bucket["Name"])
            objects += [f"{bucket['Name']}/{item['Key']}" for item in listed.get("Contents", [])]
        return {
            "models": [m["ModelName"] for m in sagemaker.list_models()["Models"]],
            "configs": [c["EndpointConfigName"]
                        for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]],
            "endpoints": [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]],
            "objects": objects,
        }


_UNIQUE_NAMES = {  # operation -> (name parameter, moto backend attribute, what AWS calls it)
    "CreateModel": ("ModelName", "_models", "model"),
    "CreateEndpointConfig": ("EndpointConfigName", "endpoint_configs", "endpoint configuration"),
    "CreateEndpoint": ("EndpointName", "endpoints", "endpoint"),
    "CreateProcessingJob": ("ProcessingJobName", "processing_jobs", "processing job"),
}


def unique_names(params, model, **kwargs):
    """``before-parameter-build`` hook: refuse a SageMaker name that exists, as AWS does (moto overwrites).

    AWS answers ``ValidationException: Cannot create already existing model "arn..."``;
    moto silently replaces the old resource, which would hide a run taking over a name.
    """
    from botocore.exceptions import ClientError
    from moto.sagemaker.models import sagemaker_backends

    if model.name not in _UNIQUE_NAMES:
        return
    parameter, attribute, noun = _UNIQUE_NAMES[model.name]
    if params.get(parameter) in getattr(sagemaker_backends[ACCOUNT][REGION], attribute):
        raise ClientError({"Error": {"Code": "ValidationException",
                                     "Message": f'Cannot create already existing {noun} "{params[parameter]}".'}},
                          model.name)


def processing_resources():
    """Hooks that make DescribeProcessingJob answer ProcessingResources (the cluster: InstanceCount, ...),
    which AWS always does and moto leaves out: (``before-parameter-build`` hook of CreateProcessingJob,
    ``after-call`` hook of DescribeProcessingJob)."""
    created: dict[str, dict] = {}

    def remember(params, **kwargs):
        created[params["ProcessingJobName"]] = params["ProcessingResources"]

    def answer(parsed, **kwargs):
        if parsed.get("ProcessingJobName") in created:
            parsed.setdefault("ProcessingResources", created[parsed["ProcessingJobName"]])

    return remember, answer


def expected_bucket_owner(requests: list):
    """``before-call`` hook for S3: record (operation, bucket, ExpectedBucketOwner) and enforce it as AWS does.

    moto ignores ``x-amz-expected-bucket-owner``; AWS answers 403 when the bucket belongs
    to another account. The owner comes from moto's own record of who created the bucket.
    """

    def hook(model, params, context, **kwargs):
        from botocore.awsrequest import AWSResponse
        from moto.s3.models import s3_backends

        bucket = context.get("input_params", {}).get("Bucket")
        expected = params["headers"].get("x-amz-expected-bucket-owner")
        requests.append((model.name, bucket, expected))
        owner = s3_backends.bucket_accounts.get(bucket, (None, None))[1]
        if expected and owner and owner != expected:
            return AWSResponse(f"http://moto/{bucket}", 403, {}, None), {
                "Error": {"Code": "403", "Message": "Forbidden"},
                "ResponseMetadata": {"HTTPStatusCode": 403}}
        return None

    return hook


def fake_update_endpoint(model, params, **kwargs):
    """UpdateEndpoint, which moto does not implement: switch the endpoint's config in moto's backend.

    Registered as a botocore ``before-call`` hook: returning (http, parsed) short-circuits
    the HTTP request. The moto server runs in this process, so its backend is reachable.
    """
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError
    from moto.sagemaker.models import sagemaker_backends

    params = json.loads(params["body"])  # the serialized request (JSON protocol)
    backend = sagemaker_backends[ACCOUNT][REGION]
    endpoint = backend.endpoints.get(params["EndpointName"])
    if endpoint is None or params["EndpointConfigName"] not in backend.endpoint_configs:
        raise ClientError(
            {"Error": {"Code": "ValidationException",
                       "Message": f"Could not find endpoint or config {params}"}},
            "UpdateEndpoint",
        )
    endpoint.endpoint_config_name = params["EndpointConfigName"]
    return AWSResponse("http://moto/", 200, {}, None), {"EndpointArn": endpoint.arn}


def binary_body_shim(bodies: list[bytes]):
    """A ``before-call`` hook for InvokeEndpoint: keep the real body, send moto its sha256.

    moto's server decodes every request body as UTF-8, so a binary ``.npy`` body gets an
    HTTP 500 there. The hook records the exact bytes the client would send (the tests
    decode them) and forwards a text stand-in that still tells requests apart.
    """

    def hook(params, **kwargs):
        body = params["body"]
        body = body.read() if hasattr(body, "read") else body
        bodies.append(bytes(body))
        params["body"] = ("sha256:" + hashlib.sha256(body).hexdigest()).encode()

    return hook


def write_model_archive(path: Path, marker: str = "v1", weight_bytes: int = 0) -> Path:
    """A minimal model.tar.gz: model.json, a weights placeholder and code/inference.py.

    ``weight_bytes`` random bytes (seeded by ``marker``, so they do not compress) make the
    weights, and so the archive, that much bigger: 20 MB makes boto3 upload it in parts.
    """
    weights = marker.encode() * 100 + random.Random(marker).randbytes(weight_bytes)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {
            "model.json": json.dumps({"task": "detection", "classes": ["square"], "marker": marker}).encode(),
            "model-0000.params": weights,
            "code/inference.py": b"def model_fn(model_dir):\n    return None\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def moto_url():
    """One moto server on 127.0.0.1 (random port) for the module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def aws(moto_url, monkeypatch, tmp_path):
    """A fresh moto account with an IAM role and a bucket; env points the tool at moto."""
    import boto3

    from deploy.aws_clients import AwsClients

    urllib.request.urlopen(
        urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10
    ).read()
    for name in ("AWS_PROFILE", "AWS_REGION", "SAGEMAKER_ROLE", "CLEARSIGHT_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("CLEARSIGHT_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # boto3 reads it for every service

    session = boto3.Session(region_name=REGION)
    calls: list[tuple[str, str]] = []
    bodies: list[bytes] = []

    def record(event_name, **kwargs):
        _, service, operation = event_name.split(".")
        calls.append((service, operation))

    session.events.register("provide-client-params", record)
    session.events.register("before-call.sagemaker.UpdateEndpoint", fake_update_endpoint)
    session.events.register("before-call.sagemaker-runtime.InvokeEndpoint", binary_body_shim(bodies))
    session.events.register("before-parameter-build.sagemaker", unique_names)
    remember_resources, answer_resources = processing_resources()
    session.events.register("before-parameter-build.sagemaker.CreateProcessingJob", remember_resources)
    session.events.register("after-call.sagemaker.DescribeProcessingJob", answer_resources)
    s3_requests: list = []
    session.events.register("before-call.s3", expected_bucket_owner(s3_requests))

    iam = boto3.client("iam", endpoint_url=moto_url, region_name=REGION)
    role_arn = iam.create_role(
        RoleName="clearsight-sagemaker", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                           "Principal": {"Service": "sagemaker.amazonaws.com"}}],
        }),
    )["Role"]["Arn"]
    boto3.client("s3", endpoint_url=moto_url, region_name=REGION).create_bucket(Bucket=BUCKET)
    clients = AwsClients.create(REGION, moto_url, boto_session=session)
    return Aws(url=moto_url, session=session, clients=clients, role_arn=role_arn, bucket=BUCKET,
               calls=calls, bodies=bodies, s3_requests=s3_requests)

