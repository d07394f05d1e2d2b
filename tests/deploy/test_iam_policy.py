"""docs/iam-policy.json allows every AWS action `deploy sagemaker` performs: recorded under moto, and scanned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from PIL import Image

from deploy.config import DeployConfig
from deploy.errors import SageMakerStepError
from deploy.sagemaker_cli import sagemaker
from deploy.sagemaker_endpoint import deploy

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs" / "iam-policy.json"
ENDPOINT_SOURCES = [ROOT / "deploy" / "sagemaker_endpoint.py"]  # exercised by the recorded scenario below
SOURCES = ENDPOINT_SOURCES + [ROOT / "clearsight" / "processing.py", ROOT / "explain" / "sources.py",
                              ROOT / "explain" / "predictors" / "sagemaker.py"]
DETECTION = [[[0, 0.9, 0.1, 0.1, 0.6, 0.6]]]

# service id in botocore event names -> IAM action prefix
IAM_PREFIX = {
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "s3": "s3",
    "sts": "sts",
    "application-auto-scaling": "application-autoscaling",
}
BOTOCORE_NAME = {"application-auto-scaling": "application-autoscaling"}
# S3 operations whose IAM action is not named after the operation.
S3_ACTIONS = {
    "HeadObject": {"s3:GetObject"},
    "HeadBucket": {"s3:ListBucket"},
    "ListObjectsV2": {"s3:ListBucket"},
    "PutObject": {"s3:PutObject", "s3:PutObjectTagging"},  # uploaded with a Tagging header
    "CreateMultipartUpload": {"s3:PutObject", "s3:PutObjectTagging"},
    "UploadPart": {"s3:PutObject"},
    "CompleteMultipartUpload": {"s3:PutObject"},
    "AbortMultipartUpload": {"s3:AbortMultipartUpload"},
}
# Actions AWS checks on behalf of a call, beyond the call's own action.
IMPLIED = {
    "sagemaker:CreateModel": {"iam:PassRole", "sagemaker:AddTags"},
    "sagemaker:CreateEndpointConfig": {"sagemaker:AddTags"},
    "sagemaker:CreateEndpoint": {"sagemaker:AddTags"},
    "application-autoscaling:RegisterScalableTarget": {"iam:CreateServiceLinkedRole"},
    "application-autoscaling:PutScalingPolicy": {
        "cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"},
    "application-autoscaling:DeleteScalingPolicy": {
        "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"},
}
# s3transfer methods the code calls, and the operations they may issue.
TRANSFER_METHODS = {
    "upload_file": {("s3", op) for op in ("PutObject", "CreateMultipartUpload", "UploadPart",
                                          "CompleteMultipartUpload", "AbortMultipartUpload")},
}


def iam_actions(service: str, operation: str) -> set[str]:
    if service == "s3" and operation in S3_ACTIONS:
        actions = set(S3_ACTIONS[operation])
    else:
        actions = {f"{IAM_PREFIX[service]}:{operation}"}
    for action in list(actions):
        actions |= IMPLIED.get(action, set())
    return actions


def policy_actions() -> set[str]:
    document = json.loads(POLICY.read_text())
    assert document["Version"] == "2012-10-17"
    allowed = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        allowed |= {actions} if isinstance(actions, str) else set(actions)
    return allowed


def test_policy_is_least_privilege_shaped():
    allowed = policy_actions()
    assert not any("*" in action for action in allowed), "no wildcard actions"
    assert all(action.split(":")[0] in {"sagemaker", "s3", "sts", "iam", "cloudwatch",
                                         "application-autoscaling"} for action in allowed)


def scanned_operations(sources=SOURCES) -> set[tuple[str, str]]:
    """(service, Operation) for every client method or paginator named in the sources."""
    session = botocore.session.get_session()
    by_method: dict[str, set[tuple[str, str]]] = {}
    for service in IAM_PREFIX:
        model = session.get_service_model(BOTOCORE_NAME.get(service, service))
        for operation in model.operation_names:
            method = botocore.xform_name(operation)
            by_method.setdefault(method, set()).add((service, operation))
    found = set()
    for source in sources:
        text = source.read_text()
        names = set(re.findall(r"\.([a-z][a-z0-9_]*)\(", text))
        names |= set(re.findall(r"get_paginator\(\"([a-z0-9_]+)\"\)", text))
        for name in names:
            found |= by_method.get(name, set()) | TRANSFER_METHODS.get(name, set())
    return found


def test_every_scanned_call_is_allowed():
    operations = scanned_operations()
    assert ("sagemaker", "CreateEndpoint") in operations and ("s3", "PutObject") in operations
    missing = {action for service, op in operations for action in iam_actions(service, op)}
    missing -= policy_actions()
    assert not missing, f"docs/iam-policy.json lacks {sorted(missing)}"


def _fail(code):
    def hook(**kwargs):
        raise ClientError({"Error": {"Code": code, "Message": "injected"},
                           "OriginalStatusCode": 424}, kwargs["event_name"].rsplit(".", 1)[-1])
    return hook


def test_every_recorded_call_is_allowed(aws, tmp_path):
    """Run every command and roll-back path under moto; check each API call the tool made."""
    runner = CliRunner()

    def cli(*args, expect=0):
        result = runner.invoke(sagemaker, list(args), obj=aws.session, catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result

    v1 = aws.model_archive(tmp_path / "v1.tar.gz", "v1")
    v2 = aws.model_archive(tmp_path / "v2.tar.gz", "v2")
    v3 = aws.model_archive(tmp_path / "v3.tar.gz", "v3")
    image = tmp_path / "scene.png"
    Image.new("RGB", (32, 24), "gray").save(image)
    aws.calls.clear()

    # A failed first run in the default bucket: roll-back deletes endpoint, config, model, data, bucket.
    fail_once = _FailOnce()
    aws.clients.sagemaker.meta.events.register("after-call.sagemaker.DescribeEndpoint", fail_once)
    with pytest.raises(SageMakerStepError):
        deploy(DeployConfig(name="iam-test", model_path=v1, role=aws.role_arn, region=aws.region,
                            poll_seconds=0.0), clients=aws.clients)
    assert fail_once.fired

    up = ["up", "--name", "iam-test", "--role", aws.role_arn, "--poll-seconds", "0"]
    aws.set_runtime_results(DETECTION)
    cli(*up, "--model", str(v1), "--autoscale", "1:2:20")
    cli("status", "--name", "iam-test")
    cli("list")
    aws.set_runtime_results(DETECTION)
    cli("invoke", "--name", "iam-test", str(image))
    aws.set_runtime_results(DETECTION)
    cli(*up, "--model", str(v2))  # update: suspend autoscaling, UpdateEndpoint, delete superseded
    aws.session.events.register("before-call.sagemaker-runtime.InvokeEndpoint", _fail("ModelError"))
    cli(*up, "--model", str(v3), expect=1)  # failed update rolled back
    cli("down", "--name", "iam-test")
    cli("down", "--name", "iam-test")

    recorded = set(aws.calls)
    assert ("sagemaker", "UpdateEndpoint") in recorded and ("s3", "DeleteBucket") in recorded
    needed = {action for service, op in recorded for action in iam_actions(service, op)}
    missing = needed - policy_actions()
    assert not missing, f"docs/iam-policy.json lacks {sorted(missing)}"
    unexercised = {op for op in scanned_operations(ENDPOINT_SOURCES) if op not in recorded}
    transfer_only = set().union(*TRANSFER_METHODS.values()) - {("s3", "PutObject")}
    assert unexercised <= transfer_only, f"calls the scenario never made: {sorted(unexercised)}"


class _FailOnce:
    """after-call hook: the first DescribeEndpoint reports Failed."""

    fired = False

    def __call__(self, parsed, **kwargs):
        if not self.fired and "EndpointStatus" in parsed:
            self.fired = True
            parsed["EndpointStatus"] = "Failed"
            parsed["FailureReason"] = "injected"
