"""deploy sagemaker against moto's server: lifecycle, safe updates, roll-back per failed step, usage errors."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from PIL import Image

from deploy.config import Autoscale, DeployConfig
from deploy.errors import DeployConfigError, SageMakerEndpointFailed, SageMakerStepError
from deploy.sagemaker_cli import sagemaker
from deploy.sagemaker_deploy import deploy
from deploy.sagemaker_inventory import endpoint_status
from deploy.sagemaker_teardown import teardown

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
UNREACHABLE_URL = "http://127.0.0.1:9"  # discard port: nothing listens; any AWS call would fail
DETECTION = [[[0, 0.91, 0.25, 0.25, 0.75, 0.75]]]  # one image, one box
NAME = "cs-test"


def run_cli(aws, *args, expect=0):
    result = CliRunner().invoke(sagemaker, list(args), obj=aws.session, catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def up_args(aws, model, *extra):
    return ["up", "--model", str(model), "--name", NAME, "--role", aws.role_arn,
            "--bucket", aws.bucket, "--poll-seconds", "0", *extra]


def make_config(aws, model, **overrides):
    settings = dict(name=NAME, model_path=model, role=aws.role_arn, region=REGION,
                    bucket=aws.bucket, poll_seconds=0.0)
    settings.update(overrides)
    return DeployConfig(**settings)


def empty(aws):
    return {"models": [], "configs": [], "endpoints": [], "objects": []}


# ------------------------------------------------------------------ lifecycle


def test_up_status_invoke_update_down(aws, tmp_path):
    model_v1 = aws.model_archive(tmp_path / "v1.tar.gz", "v1")
    aws.set_runtime_results(DETECTION)
    result = run_cli(aws, *up_args(aws, model_v1, "--autoscale", "1:3:50"))
    assert result.stdout.strip() == NAME
    assert "InService" in result.stderr and "inference OK" in result.stderr

    sm = aws.clients.sagemaker
    endpoint = sm.describe_endpoint(EndpointName=NAME)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    model = sm.describe_model(ModelName=variant["ModelName"])
    container = model["PrimaryContainer"]
    assert container["Image"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-inference:1.9.0-gpu-py38")
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": REGION,
    }
    assert model["ExecutionRoleArn"] == aws.role_arn
    run_ids = set()
    for arn in (endpoint["EndpointArn"], config["EndpointConfigArn"], model["ModelArn"]):
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        run_ids.add(tags.pop("clearsight:run"))
        assert tags == {"clearsight:tool": "clearsight", "clearsight:endpoint": NAME}
    assert len(run_ids) == 1 and len(run_ids.pop()) == 16, "one run id tags all three"
    first_url = container["ModelDataUrl"]
    assert first_url.startswith(f"s3://{aws.bucket}/clearsight/{NAME}/")
    head = aws.clients.s3.head_object(Bucket=aws.bucket, Key=first_url.split("/", 3)[3])
    assert head["Metadata"]["clearsight-tool"] == "clearsight"
    assert len(head["Metadata"]["clearsight-sha256"]) == 64

    smoke = np.load(io.BytesIO(aws.bodies[-1]), allow_pickle=False)
    assert smoke.shape == (1, 64, 64, 3) and smoke.dtype == np.uint8, "NumpySerializer body"

    status = json.loads(run_cli(aws, "status", "--name", NAME).stdout)
    assert status["status"] == "InService"
    assert status["variants"][0]["model_data"] == first_url
    assert status["autoscaling"]["min_capacity"] == 1 and status["autoscaling"]["max_capacity"] == 3

    image_path = tmp_path / "scene.png"
    Image.fromarray(np.full((40, 60, 3), 127, np.uint8)).save(image_path)
    aws.set_runtime_results(DETECTION)
    result = run_cli(aws, "invoke", "--name", NAME, str(image_path), "--draw", str(tmp_path / "drawn"))
    printed = json.loads(result.stdout)
    assert printed == [{"image": str(image_path), "predictions": DETECTION[0]}]
    sent = np.load(io.BytesIO(aws.bodies[-1]), allow_pickle=False)
    assert sent.shape == (1, 40, 60, 3) and (sent == 127).all()
    drawn = Image.open(tmp_path / "drawn" / "scene_boxes.jpeg")
    assert drawn.size == (60, 40)

    # Update in place with different bytes: new model and config, old ones deleted.
    model_v2 = aws.model_archive(tmp_path / "v2.tar.gz", "v2")
    aws.set_runtime_results(DETECTION)
    result = run_cli(aws, *up_args(aws, model_v2))
    assert "updating endpoint" in result.stderr
    after = sm.describe_endpoint(EndpointName=NAME)
    assert after["EndpointConfigName"] != endpoint["EndpointConfigName"]
    left = aws.leftovers()
    assert left["configs"] == [after["EndpointConfigName"]]
    assert left["models"] == [after["EndpointConfigName"]]
    assert len(left["objects"]) == 1 and first_url.split("/", 3)[3] not in left["objects"][0]
    status = json.loads(run_cli(aws, "status", "--name", NAME).stdout)
    assert status["autoscaling"]["min_capacity"] == 1, "autoscaling kept across the update"
    assert ("sagemaker", "UpdateEndpoint") in aws.calls

    # Same bytes again: the upload is skipped.
    aws.set_runtime_results(DETECTION)
    result = run_cli(aws, *up_args(aws, model_v2))
    assert "already in S3, same sha256" in result.stderr
    assert len(aws.leftovers()["objects"]) == 1

    result = run_cli(aws, "down", "--name", NAME, "--bucket", aws.bucket)
    assert f"removed endpoint {NAME}" in result.stdout
    assert "removed autoscaling" in result.stdout and "removed S3 object" in result.stdout
    assert aws.leftovers() == empty(aws)
    targets = aws.clients.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")
    assert targets["ScalableTargets"] == []

    result = run_cli(aws, "down", "--name", NAME, "--bucket", aws.bucket)
    assert result.stdout.strip() == f"nothing to remove for {NAME} in {REGION}"


def test_api_returns_numpy_predictor(aws, tmp_path):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import NumpySerializer

    model = aws.model_archive(tmp_path / "model.tar.gz")
    aws.set_runtime_results(DETECTION)
    predictor = deploy(make_config(aws, model), clients=aws.clients)
    assert isinstance(predictor, Predictor)
    assert isinstance(predictor.serializer, NumpySerializer)
    assert isinstance(predictor.deserializer, JSONDeserializer)
    answer = [[[0, 0.5, 0.0, 0.0, 1.0, 1.0]], []]
    aws.set_runtime_results(answer)
    assert predictor.predict(np.zeros((2, 8, 8, 3), np.uint8)) == answer
    teardown(NAME, aws.clients, bucket=aws.bucket)
    assert aws.leftovers() == empty(aws)


def test_default_bucket_is_created_and_model_data_kept_on_request(aws, tmp_path):
    model = aws.model_archive(tmp_path / "model.tar.gz")
    aws.set_runtime_results(DETECTION)
    deploy(make_config(aws, model, bucket=None), clients=aws.clients)
    default_bucket = f"sagemaker-{REGION}-{ACCOUNT}"
    objects = aws.leftovers()["objects"]
    assert len(objects) == 1 and objects[0].startswith(default_bucket + "/clearsight/")
    result = run_cli(aws, "down", "--name", NAME, "--keep-model-data")
    assert "S3 object" not in result.stdout
    assert aws.leftovers()["objects"] == objects
    run_cli(aws, "down", "--name", NAME)
    assert aws.leftovers() == empty(aws)


# ------------------------------------------------------------------ failures roll back


def _raise_client_error(code, message, status=400, **extra):
    def hook(**kwargs):
        raise ClientError({"Error": {"Code": code, "Message": message},
                           "ResponseMetadata": {"HTTPStatusCode": status}, **extra},
                          kwargs["event_name"].rsplit(".", 1)[-1])
    return hook


def _fail_status(parsed, **kwargs):
    if "EndpointStatus" in parsed:
        parsed["EndpointStatus"] = "Failed"
        parsed["FailureReason"] = "The primary container for production variant AllTraffic did not pass the ping health check."


FAILURES = {
    "create-model": ("before-call.sagemaker.CreateModel",
                     _raise_client_error("ValidationException", "Could not access model data")),
    "create-endpoint-config": ("before-call.sagemaker.CreateEndpointConfig",
                               _raise_client_error("ResourceLimitExceeded", "account limit 0 for ml.g4dn.xlarge")),
    "create-endpoint": ("before-call.sagemaker.CreateEndpoint",
                        _raise_client_error("ResourceLimitExceeded", "endpoint usage limit")),
    "wait-endpoint": ("after-call.sagemaker.DescribeEndpoint", _fail_status),
    "smoke-inference": ("before-call.sagemaker-runtime.InvokeEndpoint",
                        _raise_client_error("ModelError", "Received client error (424)", 424,
                                            OriginalStatusCode=424,
                                            OriginalMessage="model failed to load")),
}


@pytest.mark.parametrize("step", list(FAILURES))
def test_failed_step_leaves_nothing_behind(aws, tmp_path, step):
    event, hook = FAILURES[step]
    client = aws.clients.runtime if "runtime" in event else aws.clients.sagemaker
    client.meta.events.register(event, hook)
    model = aws.model_archive(tmp_path / "model.tar.gz")
    aws.set_runtime_results(DETECTION)
    with pytest.raises(SageMakerStepError) as caught:
        deploy(make_config(aws, model, autoscale=Autoscale(1, 2, 10)), clients=aws.clients)
    message = str(caught.value)
    assert caught.value.step == step and f"step {step} failed" in message
    assert caught.value.rollback_errors == ()
    if step == "wait-endpoint":
        assert isinstance(caught.value, SageMakerEndpointFailed)
        assert "did not pass the ping health check" in message
        assert f"/aws/sagemaker/Endpoints/{NAME}" in message
    if step == "smoke-inference":
        assert "ModelError" in message and "424" in message and "model failed to load" in message
    client.meta.events.unregister(event, hook)
    assert aws.leftovers() == empty(aws)
    assert aws.clients.autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_failed_step_via_cli_exits_1_with_one_line(aws, tmp_path):
    aws.session.events.register("before-call.sagemaker.CreateEndpointConfig",
                                _raise_client_error("ValidationException", "bad variant"))
    model = aws.model_archive(tmp_path / "model.tar.gz")
    result = run_cli(aws, *up_args(aws, model), expect=1)
    assert result.stderr.splitlines()[-1] == (
        "Error: step create-endpoint-config failed: ValidationException: bad variant")
    assert aws.leftovers() == empty(aws)


def test_default_bucket_created_by_a_failed_run_is_removed(aws, tmp_path):
    aws.clients.sagemaker.meta.events.register(
        "before-call.sagemaker.CreateModel", _raise_client_error("ValidationException", "no"))
    model = aws.model_archive(tmp_path / "model.tar.gz")
    with pytest.raises(SageMakerStepError, match="create-model"):
        deploy(make_config(aws, model, bucket=None), clients=aws.clients)
    buckets = [b["Name"] for b in aws.clients.s3.list_buckets()["Buckets"]]
    assert buckets == [aws.bucket]


def test_failed_update_rolls_back_to_previous_config(aws, tmp_path):
    aws.set_runtime_results(DETECTION)
    deploy(make_config(aws, aws.model_archive(tmp_path / "v1.tar.gz", "v1"),
                       autoscale=Autoscale(1, 2, 10)), clients=aws.clients)
    before = aws.leftovers()
    config_before = aws.clients.sagemaker.describe_endpoint(EndpointName=NAME)["EndpointConfigName"]
    hook = _raise_client_error("ModelError", "Received server error (500)", 424,
                               OriginalStatusCode=500, OriginalMessage="boom")
    aws.clients.runtime.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", hook)
    with pytest.raises(SageMakerStepError, match="step smoke-inference failed"):
        deploy(make_config(aws, aws.model_archive(tmp_path / "v2.tar.gz", "v2")),
               clients=aws.clients)
    endpoint = aws.clients.sagemaker.describe_endpoint(EndpointName=NAME)
    assert endpoint["EndpointConfigName"] == config_before
    assert aws.leftovers() == before
    status = endpoint_status(NAME, aws.clients)
    assert status["autoscaling"]["max_capacity"] == 2, "autoscaling restored"
    assert aws.calls.count(("sagemaker", "UpdateEndpoint")) == 2  # forward and back


def test_update_rolled_back_by_sagemaker_is_reported(aws, tmp_path):
    """SageMaker rolls a failed update back itself: InService again, on the previous config."""
    from moto.sagemaker.models import sagemaker_backends

    aws.set_runtime_results(DETECTION)
    deploy(make_config(aws, aws.model_archive(tmp_path / "v1.tar.gz", "v1")), clients=aws.clients)
    before = aws.leftovers()
    config_before = before["configs"][0]

    def roll_back_update(parsed, **kwargs):
        if parsed.get("EndpointConfigName", config_before) != config_before:
            sagemaker_backends[ACCOUNT][REGION].endpoints[NAME].endpoint_config_name = config_before
            parsed["EndpointConfigName"] = config_before
            parsed["FailureReason"] = "Request to service failed. If failure persists, contact support."

    aws.clients.sagemaker.meta.events.register("after-call.sagemaker.DescribeEndpoint",
                                               roll_back_update)
    with pytest.raises(SageMakerEndpointFailed) as caught:
        deploy(make_config(aws, aws.model_archive(tmp_path / "v2.tar.gz", "v2")),
               clients=aws.clients)
    assert caught.value.step == "wait-endpoint"
    assert "the update rolled back" in str(caught.value)
    assert "Request to service failed" in str(caught.value)
    assert aws.leftovers() == before
    assert aws.calls.count(("sagemaker", "UpdateEndpoint")) == 1


class _Creating:
    """after-call hook: the endpoint reports Creating for the first ``times`` polls."""

    def __init__(self, times):
        self.times = times

    def __call__(self, parsed, **kwargs):
        if self.times > 0 and "EndpointStatus" in parsed:
            self.times -= 1
            parsed["EndpointStatus"] = "Creating"


def test_wait_polls_until_in_service(aws, tmp_path):
    aws.clients.sagemaker.meta.events.register("after-call.sagemaker.DescribeEndpoint", _Creating(3))
    aws.set_runtime_results(DETECTION)
    lines = []
    deploy(make_config(aws, aws.model_archive(tmp_path / "m.tar.gz")), clients=aws.clients,
           progress=lines.append)
    statuses = [line.split(": ")[1].split(" after")[0] for line in lines
                if line.startswith(f"endpoint {NAME}: ")]
    assert statuses == ["Creating", "InService"]
    assert aws.calls.count(("sagemaker", "DescribeEndpoint")) >= 4


def test_wait_timeout_fails_the_step_and_rolls_back(aws, tmp_path):
    aws.clients.sagemaker.meta.events.register("after-call.sagemaker.DescribeEndpoint",
                                               _Creating(10**6))
    with pytest.raises(SageMakerStepError, match=r"step wait-endpoint failed: endpoint cs-test "
                                                 r"still Creating after \d+ s \(limit 0 s\)"):
        deploy(make_config(aws, aws.model_archive(tmp_path / "m.tar.gz"),
                           wait_timeout_seconds=0.05, poll_seconds=0.01), clients=aws.clients)
    assert aws.leftovers() == empty(aws)


def test_group_is_registered_under_python_m_deploy():
    from deploy.cli import main

    result = CliRunner().invoke(main, ["sagemaker", "--help"])
    assert result.exit_code == 0
    assert all(command in result.output for command in ("up", "down", "status", "list", "invoke"))


def test_interrupt_rolls_back_too(aws, tmp_path):
    def interrupt(**kwargs):
        raise KeyboardInterrupt

    aws.clients.sagemaker.meta.events.register("before-call.sagemaker.DescribeEndpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        deploy(make_config(aws, aws.model_archive(tmp_path / "m.tar.gz")), clients=aws.clients)
    aws.clients.sagemaker.meta.events.unregister("before-call.sagemaker.DescribeEndpoint", interrupt)
    assert aws.leftovers() == empty(aws)


def test_workers_are_set_only_when_given_so_mms_defaults_to_one_per_gpu(aws, tmp_path):
    """Without --workers the container gets no SAGEMAKER_MODEL_SERVER_WORKERS (MMS: one worker per GPU)."""
    def model_environment():
        sm = aws.clients.sagemaker
        config_name = sm.describe_endpoint(EndpointName=NAME)["EndpointConfigName"]
        config = sm.describe_endpoint_config(EndpointConfigName=config_name)
        model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        return model["PrimaryContainer"]["Environment"]

    archive = aws.model_archive(tmp_path / "m.tar.gz")
    run_cli(aws, *up_args(aws, archive, "--no-wait", "--instance-type", "ml.g4dn.12xlarge"))
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in model_environment()
    run_cli(aws, "down", "--name", NAME, "--bucket", aws.bucket)
    run_cli(aws, *up_args(aws, archive, "--no-wait", "--workers", "2"))
    assert model_environment()["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2"


def test_no_wait_returns_at_once_and_down_cleans_up(aws, tmp_path):
    result = run_cli(aws, *up_args(aws, aws.model_archive(tmp_path / "m.tar.gz"), "--no-wait"))
    assert "not waiting" in result.stderr and "inference OK" not in result.stderr
    assert f"not waiting: watch with `clearsight deploy sagemaker status --name {NAME}`" in result.stderr
    assert f"remove it with `clearsight deploy sagemaker down --name {NAME}`" in result.stderr
    assert ("sagemaker-runtime", "InvokeEndpoint") not in aws.calls
    assert aws.leftovers()["endpoints"] == [NAME]
    run_cli(aws, "down", "--name", NAME, "--bucket", aws.bucket)
    assert aws.leftovers() == empty(aws)


def test_oversized_images_are_downscaled_to_the_request_limit():
    from deploy.sagemaker_cli import MAX_REQUEST_BYTES, fit_request

    small = Image.new("RGB", (640, 480))
    assert fit_request(small) is small
    fitted = fit_request(Image.new("RGB", (4000, 3000)))
    width, height = fitted.size
    assert width * height * 3 + 128 <= MAX_REQUEST_BYTES
    assert abs(width / height - 4 / 3) < 0.01 and width > 1400


# ------------------------------------------------------------------ list, down, foreign resources


def _untagged_endpoint(aws, name):
    aws.serving_endpoint(name)  # no clearsight tags: someone else's


def test_aws_endpoint_url_is_the_standard_variable_and_the_old_one_is_deprecated(aws, monkeypatch, caplog):
    assert os.environ["AWS_ENDPOINT_URL"] == aws.url  # what the aws fixture sets, and all these tests use
    with caplog.at_level("WARNING", logger="deploy.sagemaker_endpoint"):
        assert run_cli(aws, "list").stdout == ""  # exit 0: moto answered (no clearsight endpoint there)
    assert "deprecated" not in caplog.text
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("CLEARSIGHT_AWS_ENDPOINT_URL", aws.url)
    with caplog.at_level("WARNING", logger="deploy.sagemaker_endpoint"):
        assert run_cli(aws, "list").stdout == ""
    assert ("CLEARSIGHT_AWS_ENDPOINT_URL is deprecated: set AWS_ENDPOINT_URL (every AWS service) or "
            "AWS_ENDPOINT_URL_<SERVICE>, which boto3 reads itself") in caplog.text


def test_list_finds_only_tagged_endpoints_and_down_leaves_foreign_ones(aws, tmp_path):
    _untagged_endpoint(aws, "someone-else")
    aws.set_runtime_results(DETECTION)
    deploy(make_config(aws, aws.model_archive(tmp_path / "m.tar.gz")), clients=aws.clients)
    lines = run_cli(aws, "list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [[NAME, "InService"]]
    result = run_cli(aws, "down", "--name", "someone-else", expect=1)
    assert "not created by clearsight" in result.stderr
    run_cli(aws, "down", "--name", NAME, "--bucket", aws.bucket)
    assert aws.leftovers()["endpoints"] == ["someone-else"]
    assert aws.leftovers()["models"] == ["someone-else"]


def test_list_with_no_endpoints_says_so_on_stderr_and_prints_nothing_on_stdout(aws):
    result = run_cli(aws, "list")
    assert result.stdout == ""
    assert result.stderr == f"no endpoints created by clearsight in {REGION}\n"


def test_down_removes_a_half_created_deployment(aws, tmp_path):
    sm = aws.clients.sagemaker
    tags = [{"Key": "clearsight:tool", "Value": "clearsight"},
            {"Key": "clearsight:endpoint", "Value": NAME}]
    sm.create_model(ModelName=f"{NAME}-20260101000000000", ExecutionRoleArn=aws.role_arn,
                    PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{aws.bucket}/x"},
                    Tags=tags)
    sm.create_endpoint_config(EndpointConfigName=f"{NAME}-20260101000000000", Tags=tags,
                              ProductionVariants=[{
                                  "VariantName": "AllTraffic", "InitialInstanceCount": 1,
                                  "ModelName": f"{NAME}-20260101000000000",
                                  "InstanceType": "ml.g4dn.xlarge"}])
    result = run_cli(aws, "down", "--name", NAME, "--bucket", aws.bucket)
    assert result.stdout.splitlines() == [
        f"removed endpoint config {NAME}-20260101000000000",
        f"removed model {NAME}-20260101000000000",
    ]
    assert aws.leftovers() == empty(aws)
    assert "nothing to remove" in run_cli(aws, "down", "--name", NAME).stdout


def test_status_of_missing_endpoint_exits_1(aws):
    result = run_cli(aws, "status", "--name", "nope", expect=1)
    assert result.stderr.strip() == f"Error: step status failed: endpoint nope not found in {REGION}"


# ------------------------------------------------------------------ usage errors: exit 2, no AWS call


@pytest.fixture()
def offline(aws, monkeypatch):
    """Env pointing at a closed port: any AWS call would fail; aws.calls must stay empty."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", UNREACHABLE_URL)
    monkeypatch.setenv("SAGEMAKER_ROLE", aws.role_arn)
    aws.calls.clear()
    return aws


USAGE_ERRORS = [
    (["--instance-type", "ml.g9.huge"], "Invalid value for '--instance-type': 'ml.g9.huge'"),
    (["--instance-type", "g4dn.xlarge"], "ml.g4dn.xlarge, ml.g4dn.2xlarge"),
    (["--instance-type", "ml.g4dn.huge"], "e.g. ml.g4dn.xlarge"),
    (["--name", "bad_name"], "Invalid value for '--name': 'bad_name'"),
    (["--name", "-leading-hyphen"], "1 to 63 letters, digits and hyphens"),
    (["--name", "x" * 64], "Invalid value for '--name'"),
    (["--role", "arn:aws:iam::123:role/short-account"], "Invalid value for '--role'"),
    (["--role", ""], "Missing option '--role'"),
    (["--instance-count", "0"], "Invalid value for '--instance-count': 0: an integer >= 1"),
    (["--autoscale", "3:1:10"], "MAX must be >= MIN (3)"),
    (["--autoscale", "1:2:0"], "TARGET (invocations per instance per minute) must be > 0"),
    (["--autoscale", "1-2-3"], "MIN:MAX:TARGET"),
    (["--autoscale", "0:2:5"], "MIN must be at least 1"),
    (["--autoscale", "1:2:5", "--no-wait"], "needs --wait"),
    (["--workers", "0"], "Invalid value for '--workers'"),
    (["--bucket", "Bad_Bucket"], "Invalid value for '--bucket'"),
    (["--region", "mars"], "Invalid value for '--region': 'mars'"),
]


@pytest.mark.parametrize(("extra", "expected"), USAGE_ERRORS)
def test_usage_errors_exit_2_before_any_aws_call(offline, tmp_path, extra, expected):
    model = offline.model_archive(tmp_path / "model.tar.gz")
    args = ["up", "--model", str(model), "--name", NAME, *extra]
    result = CliRunner().invoke(sagemaker, args, obj=offline.session)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert offline.calls == []


def test_missing_role_and_region_and_bad_archive(offline, tmp_path, monkeypatch):
    model = offline.model_archive(tmp_path / "model.tar.gz")
    not_a_tar = tmp_path / "model.txt"
    not_a_tar.write_text("hello")
    runner = CliRunner()
    cases = [
        (["--model", str(not_a_tar)], "Invalid value for '--model'", []),
        (["--model", str(tmp_path / "missing.tar.gz")], "an existing model.tar.gz file", []),
        (["--model", str(model)], "Missing option '--role'. SageMaker needs an IAM role ARN: give --role ARN "
                                  "or set SAGEMAKER_ROLE", ["SAGEMAKER_ROLE"]),
        (["--model", str(model)], "Invalid value for '--region': no region", ["AWS_DEFAULT_REGION"]),
    ]
    for extra, expected, env in cases:
        with monkeypatch.context() as patch:
            for key in env:
                patch.delenv(key)
            result = runner.invoke(sagemaker, ["up", "--name", NAME, *extra], obj=offline.session)
        assert result.exit_code == 2, (extra, result.output)
        assert expected in result.stderr, (extra, result.stderr)
    for command in (["down", "--name", "bad_name"], ["status", "--name", "a--"],
                    ["invoke", "--name", "ok", str(tmp_path / "missing.png")]):
        result = runner.invoke(sagemaker, command, obj=offline.session)
        assert result.exit_code == 2, (command, result.output)
    assert offline.calls == []


def test_config_messages_name_field_value_and_range(tmp_path):
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"checked by check_model_archive, not by DeployConfig")
    with pytest.raises(DeployConfigError) as caught:
        DeployConfig(name="ok", model_path=model, role="arn:aws:iam::123456789012:role/r",
                     region=REGION, instance_count=-1)
    assert caught.value.field == "instance_count" and caught.value.value == -1
    assert str(caught.value) == "instance_count=-1 is invalid: an integer >= 1"
