"""S3 buckets of `deploy sagemaker`: ExpectedBucketOwner on every call, and a bucket another account owns is refused.

moto ignores ExpectedBucketOwner and lets any account write into any bucket; the `aws`
fixture's hook answers 403 as AWS does when the header names an account that does not
own the bucket (moto records which account created each bucket), and records every S3
call's operation, bucket and header.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from tests.aws_commands import invoke_aws_command

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

REGION, ACCOUNT = "us-east-1", "123456789012"  # moto's default account (tests/conftest_moto.py)
STRANGER = "111122223333"
DEFAULT_BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
NAME = "cs-buckets"
DETECTION = [[[0, 0.9, 0.1, 0.1, 0.6, 0.6]]]


def cli(aws, *args):
    return invoke_aws_command(args, aws.session)


def big_archive(path):
    """A model.tar.gz of 9 MB (over s3transfer's 8 MB threshold: a multipart upload)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {"code/inference.py": b"def model_fn(model_dir):\n    return None\n",
                           "model-0000.params": os.urandom(9 * 2**20)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_every_s3_call_on_the_default_bucket_carries_the_expected_owner(aws, tmp_path):
    aws.set_runtime_results(DETECTION)
    model = big_archive(tmp_path / "model.tar.gz")
    up = cli(aws, "up", "--model", str(model), "--name", NAME, "--role", aws.role_arn, "--poll-seconds", "0")
    assert up.exit_code == 0, up.output
    assert cli(aws, "down", "--name", NAME).exit_code == 0
    calls = [(operation, expected) for operation, bucket, expected in aws.s3_requests if bucket == DEFAULT_BUCKET]
    operations = {operation for operation, _ in calls}
    assert {"HeadBucket", "CreateBucket", "HeadObject", "CreateMultipartUpload", "UploadPart",
            "CompleteMultipartUpload", "ListObjectsV2", "DeleteObject"} <= operations
    # CreateBucket has no such parameter: the bucket does not exist yet, the creator owns it.
    assert [call for call in calls if call[0] != "CreateBucket" and call[1] != ACCOUNT] == []


def test_an_explicit_bucket_and_the_explain_job_out_bucket_carry_it_too(aws, tmp_path):
    aws.set_runtime_results(DETECTION)
    aws.clients.s3.create_bucket(Bucket="cs-images")  # read only; may belong to another account
    aws.clients.s3.put_object(Bucket="cs-images", Key="a.png", Body=b"png")
    model = aws.model_archive(tmp_path / "model.tar.gz")
    commands = [
        ["up", "--model", str(model), "--name", NAME, "--role", aws.role_arn, "--bucket", aws.bucket,
         "--poll-seconds", "0"],
        ["explain-job", "--images", "s3://cs-images/", "--endpoint", NAME, "--out",
         f"s3://{aws.bucket}/out", "--role", aws.role_arn, "--job-name", "cs-buckets-job", "--no-wait"],
        ["down", "--name", NAME, "--bucket", aws.bucket],
    ]
    for args in commands:
        aws.s3_requests.clear()
        result = cli(aws, *args)
        assert result.exit_code == 0, result.output
        calls = [(op, expected) for op, bucket, expected in aws.s3_requests if bucket == aws.bucket]
        assert any(op in ("PutObject", "DeleteObject") for op, _ in calls), (args[0], calls)
        assert all(expected == ACCOUNT for _, expected in calls), (args[0], calls)


@pytest.mark.parametrize("explicit", [False, True], ids=["default-bucket", "--bucket"])
def test_a_bucket_of_another_account_is_refused_and_left_alone(aws, tmp_path, explicit):
    stranger = aws.client("s3", STRANGER)
    bucket = "squatted-models" if explicit else DEFAULT_BUCKET
    stranger.create_bucket(Bucket=bucket)  # e.g. squatting the predictable default name
    before = aws.state()
    args = ["up", "--model", str(aws.model_archive(tmp_path / "model.tar.gz")), "--name", NAME,
            "--role", aws.role_arn, "--poll-seconds", "0"] + (["--bucket", bucket] if explicit else [])
    result = cli(aws, *args)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: step upload-model failed: S3 bucket {bucket} is not owned by your account {ACCOUNT}, "
        f"or you may not list it (S3 answered 403 to HeadBucket with ExpectedBucketOwner={ACCOUNT}); "
        "nothing was written to it. Use a bucket your account owns: give --bucket NAME "
        "(env CLEARSIGHT_S3_BUCKET)")
    assert aws.state() == before, "nothing uploaded to the stranger's bucket, nothing created"


def test_an_explain_job_refuses_an_out_bucket_of_another_account(aws):
    stranger = aws.client("s3", STRANGER)
    stranger.create_bucket(Bucket="strangers-results")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    aws.serving_endpoint(NAME)
    before = aws.state()
    result = cli(aws, "explain-job", "--images", f"s3://{aws.bucket}/images", "--endpoint", NAME,
                 "--out", "s3://strangers-results/run1", "--role", aws.role_arn, "--job-name", "cs-job",
                 "--no-wait")
    assert result.exit_code == 1
    assert ("S3 bucket strangers-results is not owned by your account 123456789012, or you may not "
            "list it") in result.output
    assert "choose an --out bucket of your account" in result.output
    assert aws.state() == before, "no code archive in the stranger's bucket, no job"
