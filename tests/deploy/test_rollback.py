"""Every AWS call that creates something, failed three ways under moto, leaves nothing of the run and touches nothing else.

The scenario is what a user runs: `deploy sagemaker up` with autoscaling into the default
bucket, then `explain-job` (uploads of the project wheel and the wheelhouse, CreateProcessingJob) and
`explain-merge` (the report's two uploads). Each command is one transaction. For each
create call of the scenario, and each way it can fail (refused before it is sent; sent,
the server acts, the response is lost; Ctrl-C while it is in flight), the command must
fail and moto must hold exactly what it held before the command: the pre-existing
endpoints, models, objects, jobs and autoscaling of others unchanged (tags, config,
ETag, status), nothing of the failed run left (a processing job, which SageMaker cannot
delete, stopped).

A fourth command, `up-large`, deploys a 20 MB model into a bucket that exists: boto3 uploads
it in parts, from parallel threads (a multipart upload left pending is stored and billed,
and disappears only with its bucket).
"""

from __future__ import annotations

import _thread
import re
import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

from tests.aws_commands import invoke_aws_command
from tests.clearsight.test_processing import (
    EXPLAIN_OPTIONS,
    KEYS,
    png_bytes,
    processing_layout,
    run_worker,
)

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

REGION, ACCOUNT = "us-east-1", "123456789012"  # moto's default account (tests/conftest_moto.py)
OTHER_ACCOUNT = "111122223333"  # a stranger's
NAME = "cs-rollback"
JOB = "cs-rollback-job"
DEFAULT_BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
DETECTION = [[[0, 0.9, 0.1, 0.1, 0.6, 0.6]]]
CREATE_OPERATION = re.compile(r"(Create|Put|Register|Start|Upload|Complete|Copy|Run|Import)[A-Z]\w*")

# Every create call the scenario makes, per command, in order: (command, service, operation,
# index among that command's calls of the operation). test_scenario_makes_exactly_these_create_calls
# records a real run and fails when a create call is added or removed without updating this list.
CREATE_CALLS = [
    ("up", "s3", "CreateBucket", 0),
    ("up", "s3", "PutObject", 0),  # model.tar.gz
    ("up", "sagemaker", "CreateModel", 0),
    ("up", "sagemaker", "CreateEndpointConfig", 0),
    ("up", "sagemaker", "CreateEndpoint", 0),
    ("up", "application-auto-scaling", "RegisterScalableTarget", 0),
    ("up", "application-auto-scaling", "PutScalingPolicy", 0),
    ("explain-job", "s3", "PutObject", 0),  # the project wheel
    ("explain-job", "s3", "PutObject", 1),  # the wheelhouse
    ("explain-job", "sagemaker", "CreateProcessingJob", 0),
    ("explain-merge", "s3", "PutObject", 0),  # analysis.json
    ("explain-merge", "s3", "PutObject", 1),  # report.html
    # model.tar.gz, 20 MB: boto3 uploads it in 8 MB parts, from parallel threads
    ("up-large", "s3", "CreateMultipartUpload", 0),
    ("up-large", "s3", "UploadPart", 0),
    ("up-large", "s3", "UploadPart", 1),
    ("up-large", "s3", "UploadPart", 2),
    ("up-large", "s3", "CompleteMultipartUpload", 0),
    ("up-large", "sagemaker", "CreateModel", 0),
    ("up-large", "sagemaker", "CreateEndpointConfig", 0),
    ("up-large", "sagemaker", "CreateEndpoint", 0),
]
COMMANDS = ["up", "explain-job", "explain-merge", "up-large"]
# up-large's SageMaker calls are up's: failing them again would test nothing new
FAILED_CALLS = [call for call in CREATE_CALLS if call[0] != "up-large" or call[1] == "s3"]
FAILURE_KINDS = ["refused-before-sending", "response-lost", "ctrl-c-in-flight"]
MODEL_ARCHIVE_BYTES = 20_000_000  # over boto3's 8 MB multipart threshold


def command_args(aws, command, models):
    if command == "up":  # no --bucket: the default bucket, created by the run
        return ["up", "--model", str(models["up"]), "--name", NAME, "--role", aws.role_arn,
                "--poll-seconds", "0", "--autoscale", "1:2:20"]
    if command == "up-large":  # into a bucket that exists, where a pending upload would stay
        return ["up", "--model", str(models["up-large"]), "--name", f"{NAME}-large", "--role", aws.role_arn,
                "--poll-seconds", "0", "--bucket", aws.bucket]
    if command == "explain-job":
        return ["explain-job", "--images", f"s3://{aws.bucket}/images", "--endpoint", "other-app",  # world's
                "--out", f"s3://{aws.bucket}/explanations", "--role", aws.role_arn,
                "--job-name", JOB, "--no-wait", "--", *EXPLAIN_OPTIONS]
    return ["explain-merge", "--out", f"s3://{aws.bucket}/explanations"]


class Fault:
    """botocore hooks that make the ``index``-th call of ``operation`` fail in one of three ways.

    refused-before-sending: the call raises EndpointConnectionError before any byte is sent.
    response-lost: every attempt is really sent to moto (which acts on it), then
    ReadTimeoutError is raised instead of the answer, so botocore retries and finally fails.
    ctrl-c-in-flight: the request is sent, then SIGINT is simulated for the main thread
    (``_thread.interrupt_main``), as a user's Ctrl-C would arrive.

    s3transfer sends the parts of a multipart upload from several threads at once: the calls
    are counted under a lock, and the call that fires is followed by the thread that made it
    (botocore emits before-call and then before-send, once per attempt, on one thread).
    """

    def __init__(self, kind: str, service: str, operation: str, index: int) -> None:
        self.kind, self.service, self.operation, self.index = kind, service, operation, index
        self.seen = 0
        self.fired = False
        self.armed_thread: int | None = None  # the thread making the call that fails
        self.lock = threading.Lock()

    def register(self, session) -> None:
        session.events.register(f"before-call.{self.service}.{self.operation}", self.before_call)
        session.events.register(f"before-send.{self.service}.{self.operation}", self.before_send)

    def before_call(self, **kwargs):
        with self.lock:
            index, self.seen = self.seen, self.seen + 1
            if self.armed_thread == threading.get_ident():
                self.armed_thread = None  # the failed call is over; this thread makes another one
            if index != self.index:
                return None
            self.fired = True
            if self.kind != "refused-before-sending":
                self.armed_thread = threading.get_ident()
        if self.kind == "refused-before-sending":
            raise EndpointConnectionError(endpoint_url="https://injected.invalid")
        return None

    def before_send(self, request, **kwargs):
        with self.lock:
            if self.armed_thread != threading.get_ident():
                return None
            if self.kind == "ctrl-c-in-flight":
                self.armed_thread = None  # one Ctrl-C; response-lost fails every retry too
        response = URLLib3Session().send(request)  # the server acts on it
        if self.kind == "response-lost":
            raise ReadTimeoutError(endpoint_url=request.url)
        _thread.interrupt_main()
        return response


@pytest.fixture(scope="module")
def job_outputs(tmp_path_factory, tiny_detector_dir):
    """What one processing instance writes to --out (manifest, explanations), made once by the real worker."""
    root = tmp_path_factory.mktemp("job-outputs")
    env = processing_layout(root, "algo-1", ["algo-1", "algo-2"], KEYS[:1])
    run_worker(env, tiny_detector_dir)
    return sorted((root / "algo-1/opt/ml/processing/output").iterdir())


@pytest.fixture(scope="module")
def large_model(tmp_path_factory):
    # a pytest plugin of this module: imported at the top, pytest could not rewrite its asserts
    from tests.conftest_moto import write_model_archive

    return write_model_archive(tmp_path_factory.mktemp("large") / "model.tar.gz", "large", MODEL_ARCHIVE_BYTES)


@pytest.fixture()
def world(aws, job_outputs, large_model, tmp_path, monkeypatch):
    """Moto with other people's things in it, jobs that start InProgress, and the models that
    ``up`` (a small archive) and ``up-large`` (20 MB) deploy."""
    from moto.sagemaker.models import FakeProcessingJob

    original = FakeProcessingJob.__init__

    def in_progress(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.processing_job_status = "InProgress"

    monkeypatch.setattr(FakeProcessingJob, "__init__", in_progress)
    sm, s3 = aws.clients.sagemaker, aws.clients.s3
    for name, tags in (("someone-else", []),  # untagged
                       ("other-app", [{"Key": "clearsight:tool", "Value": "clearsight"},
                                      {"Key": "clearsight:endpoint", "Value": "other-app"},
                                      {"Key": "clearsight:run", "Value": "another-run"}])):
        tagging = {"Tags": tags} if tags else {}
        sm.create_model(ModelName=name, ExecutionRoleArn=aws.role_arn, **tagging,
                        PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{aws.bucket}/x"})
        sm.create_endpoint_config(EndpointConfigName=name, **tagging, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name, **tagging)
    aws.clients.autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId="endpoint/other-app/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1, MaxCapacity=3)
    sm.create_processing_job(
        ProcessingJobName="someone-elses-job", RoleArn=aws.role_arn,
        AppSpecification={"ImageUri": "img"},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.c5.xlarge",
                                               "VolumeSizeInGB": 1}})
    stranger = aws.client("s3", OTHER_ACCOUNT)
    stranger.create_bucket(Bucket="strangers-bucket")
    stranger.put_object(Bucket="strangers-bucket", Key="clearsight/data", Body=b"theirs")
    s3.put_object(Bucket=aws.bucket, Key="clearsight/other-app/model.tar.gz", Body=b"other app",
                  Metadata={"clearsight-tool": "clearsight", "clearsight-run": "another-run"})
    for index, key in enumerate(KEYS[:1]):
        s3.put_object(Bucket=aws.bucket, Key=f"images/{key}", Body=png_bytes(index))
    for path in job_outputs:
        s3.put_object(Bucket=aws.bucket, Key=f"explanations/{path.name}", Body=path.read_bytes())
    aws.set_runtime_results(DETECTION)
    return {"up": aws.model_archive(tmp_path / "model.tar.gz"), "up-large": large_model}


def run(aws, command, models):
    return invoke_aws_command(command_args(aws, command, models), aws.session)


def test_scenario_makes_exactly_these_create_calls(aws, world):
    """The list above is the truth: a create call added to the code without a failure test fails here."""
    recorded = []
    for command in COMMANDS:
        aws.calls.clear()
        result = run(aws, command, world)
        assert result.exit_code == 0, result.output
        counts: dict = {}
        for service, operation in aws.calls:
            if CREATE_OPERATION.fullmatch(operation):
                recorded.append((command, service, operation, counts.get(operation, 0)))
                counts[operation] = counts.get(operation, 0) + 1
    assert recorded == CREATE_CALLS


@pytest.mark.parametrize("kind", FAILURE_KINDS)
@pytest.mark.parametrize("call", FAILED_CALLS, ids=lambda call: f"{call[0]}-{call[2]}-{call[3]}")
def test_a_failed_create_call_leaves_nothing_of_the_run(aws, world, call, kind):
    command, service, operation, index = call
    if command == "explain-merge":  # the merge works on the outputs of a job that ran
        assert run(aws, "explain-job", world).exit_code == 0
    before = aws.state()
    fault = Fault(kind, service, operation, index)
    fault.register(aws.session)
    result = run(aws, command, world)
    assert fault.fired, f"the scenario made no call {operation} #{index}"
    assert result.exit_code == 1, result.output
    assert "clean-up left behind" not in result.output, result.output
    after = aws.state()
    new_jobs = {name: status for name, status in after["jobs"].items() if name not in before["jobs"]}
    if operation == "CreateProcessingJob" and kind != "refused-before-sending":
        # SageMaker cannot delete a job: the one whose creation "failed" must be stopped.
        assert new_jobs == {JOB: "Stopped"}, result.output
        del after["jobs"][JOB]
    assert after == before, result.output


SQUATTED = {"CreateModel": "models", "CreateEndpointConfig": "configs", "CreateEndpoint": "endpoints",
            "CreateProcessingJob": "jobs"}


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "tagged-by-another-run"])
@pytest.mark.parametrize("operation", list(SQUATTED))
def test_a_resource_someone_makes_with_the_same_name_is_never_deleted(aws, world, operation, tagged):
    """Between the run's existence check and its create call, someone else takes the name."""
    tagging = {"Tags": [{"Key": "clearsight:tool", "Value": "clearsight"},
                        {"Key": "clearsight:run", "Value": "another-run"}]} if tagged else {}
    sm = aws.client("sagemaker")
    squatted = {}

    def squat(params, **kwargs):
        if operation == "CreateModel":
            name = params["ModelName"]
            sm.create_model(ModelName=name, ExecutionRoleArn=aws.role_arn,
                            PrimaryContainer={"Image": "theirs"}, **tagging)
        elif operation == "CreateEndpointConfig":
            name = params["EndpointConfigName"]
            sm.create_endpoint_config(EndpointConfigName=name, **tagging, ProductionVariants=[{
                "VariantName": "v", "ModelName": "someone-else", "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large"}])
        elif operation == "CreateEndpoint":
            name = params["EndpointName"]
            sm.create_endpoint(EndpointName=name, EndpointConfigName="someone-else", **tagging)
        else:
            name = params["ProcessingJobName"]
            sm.create_processing_job(ProcessingJobName=name, RoleArn=aws.role_arn,
                                     AppSpecification={"ImageUri": "theirs"}, **tagging,
                                     ProcessingResources={"ClusterConfig": {
                                         "InstanceCount": 1, "InstanceType": "ml.c5.xlarge",
                                         "VolumeSizeInGB": 1}})
        squatted[name] = aws.state()[SQUATTED[operation]][name]

    # More specific than conftest's unique_names hook, so it runs first: the name is taken
    # by the time the create call is checked, as in a race with another user.
    aws.session.events.register(f"before-parameter-build.sagemaker.{operation}", squat)
    command = "explain-job" if operation == "CreateProcessingJob" else "up"
    before = aws.state()
    result = run(aws, command, world)
    assert result.exit_code == 1, result.output
    assert "Cannot create already existing" in result.output
    after = aws.state()
    (name, value), = squatted.items()
    assert after[SQUATTED[operation]].pop(name) == value, "the other's resource is as they made it"
    assert after == before, "and nothing of the failed run is left"


def test_roll_back_goes_on_through_one_ctrl_c_and_lists_what_a_second_one_left(aws, world):
    aws.session.events.register("before-call.sagemaker.CreateEndpoint", _refuse)
    presses = {"DeleteEndpointConfig": 1, "DeleteModel": 1}

    def press(model, **kwargs):
        if presses.get(model.name):
            presses[model.name] = 0
            _thread.interrupt_main()  # a user's Ctrl-C

    aws.session.events.register("before-call.sagemaker", press)
    before = aws.state()
    result = run(aws, "up", world)
    assert result.exit_code == 1
    assert "still rolling back" in result.output and "rolled back: endpoint config" in result.output
    left = result.output.split("clean-up left behind: ", 1)[1]
    model = re.search(r"model (cs-rollback-\d+) \(roll-back stopped by Ctrl-C; delete it with "
                      rf"`aws sagemaker delete-model --model-name \1 --region {REGION}`\)", left)
    assert model, result.output
    assert f"`aws s3 rm s3://{DEFAULT_BUCKET}/clearsight/{NAME}/" in left
    assert f"`aws s3 rb s3://{DEFAULT_BUCKET}`" in left
    after = aws.state()
    assert set(after["models"]) - set(before["models"]) == {model.group(1)}
    assert set(after["configs"]) == set(before["configs"]), "the first Ctrl-C did not stop the roll-back"
    assert set(after["buckets"]) - set(before["buckets"]) == {DEFAULT_BUCKET}


def _refuse(**kwargs):
    raise ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": "injected"}}, "CreateEndpoint")
