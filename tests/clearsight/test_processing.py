"""SageMaker Processing: the worker on the container's folder layout, the job definition on moto, the merge."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import shlex
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from clearsight.cli import main as clearsight
from clearsight.job_bundle import JobUploads
from clearsight.processing import ExplainJobConfig, processing_job_request
from explain.cli import main as explain_main
from explain.processing_worker import main as worker_main
from explain.sharding import shard_of
from tests.clarify_configs import sdk_analysis_config
from tests.explain.test_explainer import red_square_scene

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

ROLE = "arn:aws:iam::123456789012:role/clearsight-sagemaker"
EXPLAIN_OPTIONS = ["--num-samples", "16", "--num-segments", "4"]
EXPLAIN_OPTIONS_ERROR = "Invalid value for '-- EXPLAIN OPTIONS': "
KEYS = ["a/scene0.png", "a/scene1.png", "b/scene2.png", "b/scene3.png", "scene4.png"]


def png_bytes(seed):
    buffer = io.BytesIO()
    Image.fromarray(red_square_scene(seed=seed)).save(buffer, format="PNG")
    return buffer.getvalue()


def processing_layout(root, host, hosts, keys):
    """/opt/ml/processing/... under ``root`` for one host holding ``keys``, as SageMaker lays it out."""
    images = root / host / "opt/ml/processing/input/images"
    for key in keys:
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        (images / key).write_bytes(png_bytes(KEYS.index(key)))
    config = root / host / "opt/ml/config/resourceconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
    return {"CLEARSIGHT_PROCESSING_INPUT": str(images),
            "CLEARSIGHT_PROCESSING_OUTPUT": str(root / host / "opt/ml/processing/output"),
            "CLEARSIGHT_RESOURCE_CONFIG": str(config)}


def run_worker(env, model_dir, job_name=None):
    job = ["--job-name", job_name] if job_name else []
    result = CliRunner().invoke(worker_main, [*job, "--endpoint", str(model_dir), "--task", "detection",
                                              *EXPLAIN_OPTIONS],
                                env=env, prog_name="python -m explain.processing_worker")
    assert result.exit_code == 0, result.output
    return result


def job_args(aws, *extra):
    return ["explain-job", "--images", f"s3://{aws.bucket}/images", "--endpoint", "shapes-detector",
            "--out", f"s3://{aws.bucket}/explanations", "--role", aws.role_arn, "--instance-count", "2",
            "--job-name", "cs-explain-test", "--poll-seconds", "0", *extra]


def s3_json(aws, key):
    return json.loads(aws.clients.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())


def test_single_host_worker_writes_the_report(tmp_path, tiny_detector_dir):
    env = processing_layout(tmp_path, "algo-1", ["algo-1"], KEYS)
    result = run_worker(env, tiny_detector_dir)
    output = tmp_path / "algo-1/opt/ml/processing/output"
    assert "explained 5 image(s)" in result.stdout
    assert (output / "manifest-algo-1.jsonl").is_file()
    analysis = json.loads((output / "analysis.json").read_text())
    assert [item["stem"] for item in analysis["images"]] == [
        "a__scene0.png", "a__scene1.png", "b__scene2.png", "b__scene3.png", "scene4.png"]
    assert (output / "a__scene0.png_shap.npz").is_file() and (output / "report.html").is_file()


def test_the_last_line_of_a_host_of_a_job_says_what_merges_the_report(tmp_path, tiny_detector_dir):
    """It advised "run without --shard to merge the report", which means nothing in a job."""
    env = processing_layout(tmp_path, "algo-2", ["algo-1", "algo-2"], KEYS[:1])
    result = run_worker(env, tiny_detector_dir, "cs-explain")
    assert result.stdout.strip().splitlines()[-1] == (
        f"results in {env['CLEARSIGHT_PROCESSING_OUTPUT']} (the report of all hosts is merged when the job has "
        "ended: `clearsight explain-job --wait` does it, or `clearsight explain-merge --out <the job's --out> "
        "--job-name cs-explain`)")
    assert "--shard" not in result.output
    shard = CliRunner().invoke(explain_main, ["--endpoint", str(tiny_detector_dir), "--task", "detection",
                                              *EXPLAIN_OPTIONS, "--shard", "0/2", "--quiet", "--out",
                                              str(tmp_path / "shard"), env["CLEARSIGHT_PROCESSING_INPUT"]])
    assert shard.exit_code == 0, shard.output
    assert shard.stdout.strip().splitlines()[-1] == (
        f"results in {tmp_path / 'shard'} (run without --shard to merge the report)")


def test_worker_without_images_succeeds_quietly(tmp_path, tiny_detector_dir):
    env = processing_layout(tmp_path, "algo-3", ["algo-1", "algo-2", "algo-3"], [])
    result = CliRunner().invoke(worker_main, ["--job-name", "cs-explain", "--endpoint", str(tiny_detector_dir),
                                              "--task", "detection"], env=env)
    assert result.exit_code == 0 and "nothing to do" in result.stderr
    # an empty manifest: the merge counts the host as ended, not as missing
    assert (tmp_path / "algo-3/opt/ml/processing/output/manifest-cs-explain@algo-3.jsonl").read_text() == ""


def test_job_definition(aws):
    config = ExplainJobConfig(
        job_name="cs-explain", images_url="s3://in-bucket/images", endpoint_name="shapes-detector",
        out_url="s3://out-bucket/run1", role=ROLE, region="eu-west-1", instance_count=3,
        explain_args=("--num-samples", "500"))
    uploads = JobUploads(Path("build/clearsight-0.1.0-py3-none-any.whl"), "c" * 64,
                         Path("build/clearsight-wheelhouse.tar"), "d" * 64)
    request = processing_job_request(config, "IMAGE", uploads)
    images, code, wheelhouse = request["ProcessingInputs"]
    assert images["S3Input"] == {"S3Uri": "s3://in-bucket/images/", "LocalPath": "/opt/ml/processing/input/images",
                                 "S3DataType": "S3Prefix", "S3InputMode": "File",
                                 "S3DataDistributionType": "ShardedByS3Key"}
    assert code["S3Input"]["S3Uri"] == f"s3://out-bucket/run1/code/{'c' * 64}/clearsight-0.1.0-py3-none-any.whl"
    assert wheelhouse["S3Input"]["S3Uri"] == f"s3://out-bucket/run1/wheelhouse/{'d' * 64}/clearsight-wheelhouse.tar"
    for item, folder in ((code, "code"), (wheelhouse, "wheelhouse")):
        assert item["S3Input"]["S3DataDistributionType"] == "FullyReplicated"
        assert item["S3Input"]["LocalPath"] == f"/opt/ml/processing/input/{folder}"
    assert request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"] == {
        "S3Uri": "s3://out-bucket/run1", "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 3, "InstanceType": "ml.c5.xlarge", "VolumeSizeInGB": 30}
    app = request["AppSpecification"]
    assert app["ImageUri"] == "IMAGE" and app["ContainerEntrypoint"][:2] == ["bash", "-c"]
    script = app["ContainerEntrypoint"][2]
    assert "-m explain.processing_worker" in script and "pip install --quiet --no-index" in script
    assert f"code {'c' * 64}" in script and f"wheelhouse {'d' * 64}" in script
    assert app["ContainerArguments"] == ["--job-name", "cs-explain", "--endpoint", "sagemaker:shapes-detector",
                                         "--task", "detection", "--num-samples", "500"]
    assert request["Environment"]["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert {"Key": "clearsight:tool", "Value": "clearsight"} in request["Tags"]


def test_explain_job_on_moto_then_merge_of_two_hosts(aws, tmp_path, tiny_detector_dir):
    aws.serving_endpoint("shapes-detector")
    # what two instances would have written, from the worker run on the container layout
    hosts = ["algo-1", "algo-2"]
    shares = {host: [key for key in KEYS if shard_of(key, 2) == index] for index, host in enumerate(hosts)}
    assert all(shares.values())
    s3 = aws.clients.s3
    for host in hosts:
        env = processing_layout(tmp_path, host, hosts, shares[host])
        run_worker(env, tiny_detector_dir, "cs-explain-test")  # the job's ContainerArguments name it
        output = tmp_path / host / "opt/ml/processing/output"
        assert (output / f"manifest-cs-explain-test@{host}.jsonl").is_file()
        assert not (output / "analysis.json").exists()  # several hosts: the merge writes it
        for path in output.iterdir():
            s3.upload_file(str(path), aws.bucket, f"explanations/{path.name}")
    for key in KEYS:
        s3.put_object(Bucket=aws.bucket, Key=f"images/{key}", Body=b"png")

    result = CliRunner().invoke(clearsight, job_args(aws, "--", *EXPLAIN_OPTIONS), obj=aws.session,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"s3://{aws.bucket}/explanations/report.html"

    job = aws.clients.sagemaker.describe_processing_job(ProcessingJobName="cs-explain-test")
    assert job["ProcessingJobStatus"] == "Completed" and job["RoleArn"] == aws.role_arn
    inputs = {item["InputName"]: item["S3Input"] for item in job["ProcessingInputs"]}
    assert inputs["images"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["images"]["S3Uri"] == f"s3://{aws.bucket}/images/"
    for name in ("code", "wheelhouse"):  # content-addressed: the key holds the sha256 of the bytes
        key = inputs[name]["S3Uri"][len(f"s3://{aws.bucket}/"):]
        body = s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read()
        assert key.split("/")[-2] == hashlib.sha256(body).hexdigest() and key.startswith(f"explanations/{name}/")
    assert job["AppSpecification"]["ContainerArguments"][-4:] == EXPLAIN_OPTIONS
    assert job["AppSpecification"]["ImageUri"].endswith("pytorch-training:2.3-cpu-py311")
    assert ("sagemaker", "CreateProcessingJob") in aws.calls

    analysis = s3_json(aws, "explanations/analysis.json")
    assert sorted(item["stem"] for item in analysis["images"]) == [
        "a__scene0.png", "a__scene1.png", "b__scene2.png", "b__scene3.png", "scene4.png"]
    assert analysis["totals"]["images"] == 5
    report = s3.get_object(Bucket=aws.bucket, Key="explanations/report.html")["Body"].read().decode()
    assert 'src="scene4.png_objects.jpeg"' in report


def upload_outputs(aws, output):
    """What SageMaker does at the end of a job: every file of the host's output folder to --out."""
    for path in sorted(output.iterdir()):
        if path.is_file():
            aws.clients.s3.upload_file(str(path), aws.bucket, f"explanations/{path.name}")


def s3_names(aws, prefix="explanations/"):
    listed = aws.clients.s3.list_objects_v2(Bucket=aws.bucket, Prefix=prefix, Delimiter="/")
    return {item["Key"][len(prefix):] for item in listed.get("Contents", [])}


def test_a_merge_reports_one_jobs_outputs_and_names_what_other_jobs_left(aws, tmp_path, tiny_detector_dir):
    """Two jobs wrote to one --out: the earlier on two hosts over five images, the later on one host over four,
    where a/scene0.png's bytes no longer decode. The later job's merge shows its own three images: the earlier
    job's manifests stay (its algo-2 manifest is not merged as the later job's), the failed image's files from
    the earlier job are named as not this run's, and what else the earlier job left is named too."""
    aws.serving_endpoint("shapes-detector")
    hosts = ["algo-1", "algo-2"]
    shares = {host: [key for key in KEYS if shard_of(key, 2) == index] for index, host in enumerate(hosts)}
    for host in hosts:
        run_worker(processing_layout(tmp_path / "earlier", host, hosts, shares[host]), tiny_detector_dir,
                   "cs-explain-earlier")
        upload_outputs(aws, tmp_path / "earlier" / host / "opt/ml/processing/output")
    earlier_files = {}
    for host in hosts:
        manifest = aws.clients.s3.get_object(Bucket=aws.bucket,
                                             Key=f"explanations/manifest-cs-explain-earlier@{host}.jsonl")
        for line in manifest["Body"].read().decode().splitlines():
            entry = json.loads(line)
            earlier_files[entry["key"]] = sorted(entry["files"])
    assert sorted(earlier_files) == sorted(KEYS)
    time.sleep(1.1)  # S3 times objects to the second: the later job's manifests are newer

    later = tmp_path / "later" / "algo-1"
    env = processing_layout(tmp_path / "later", "algo-1", ["algo-1"], KEYS[:4])
    image = later / "opt/ml/processing/input/images/a/scene0.png"
    image.write_bytes(image.read_bytes()[:100])
    run_worker(env, tiny_detector_dir, "cs-explain-test")
    upload_outputs(aws, later / "opt/ml/processing/output")
    for key in KEYS[:4]:
        aws.clients.s3.put_object(Bucket=aws.bucket, Key=f"images/{key}", Body=b"png")

    result = CliRunner().invoke(clearsight, job_args(aws, "--instance-count", "1", "--", *EXPLAIN_OPTIONS),
                                obj=aws.session, catch_exceptions=False)
    assert result.exit_code == 1, result.output  # an image failed
    assert (f"merging 1 manifest(s) of job cs-explain-test from s3://{aws.bucket}/explanations; leaving out those "
            "of 1 other run(s) there (job cs-explain-earlier)") in result.stderr
    assert f"    files from an earlier run, not this one: {', '.join(earlier_files['a/scene0.png'][:4])}" in (
        result.stderr.splitlines())
    analysis = s3_json(aws, "explanations/analysis.json")
    assert [item["stem"] for item in analysis["images"]] == ["a__scene1.png", "b__scene2.png", "b__scene3.png"]
    assert analysis["totals"]["failed"] == [{
        "image": str(image), "key": "a/scene0.png", "kind": "image",
        "reason": f"cannot read image '{image}': image file is truncated",
        "files_from_earlier_run": earlier_files["a/scene0.png"]}]
    assert analysis["totals"]["other_runs"] == [{
        "run": "cs-explain-earlier", "images": 5, "not_in_this_run": 2,
        "files": sorted(earlier_files["a/scene0.png"] + earlier_files["scene4.png"])}]
    assert {"manifest-cs-explain-earlier@algo-1.jsonl", "manifest-cs-explain-earlier@algo-2.jsonl",
            "manifest-cs-explain-test@algo-1.jsonl"} <= s3_names(aws)  # nothing lost
    report = aws.clients.s3.get_object(Bucket=aws.bucket, Key="explanations/report.html")["Body"].read().decode()
    assert "The output location also holds outputs of other runs." in report
    assert "<td class=text>cs-explain-earlier</td><td>5</td><td>2</td><td>" in report
    assert "scene4.png_objects.jpeg\"" not in report and "a__scene0.png_objects.jpeg\"" not in report

    # explain-merge merges the latest job by default; the earlier one is refused: its files were replaced
    merged = CliRunner().invoke(clearsight, ["explain-merge", "--out", f"s3://{aws.bucket}/explanations",
                                             "--allow-partial"], obj=aws.session)
    assert merged.exit_code == 0, merged.output
    assert s3_json(aws, "explanations/analysis.json")["totals"]["other_runs"] == analysis["totals"]["other_runs"]
    refused = CliRunner().invoke(clearsight, ["explain-merge", "--out", f"s3://{aws.bucket}/explanations",
                                              "--job-name", "cs-explain-earlier"], obj=aws.session)
    assert refused.exit_code == 1, refused.output
    assert (f"Error: merge: 3 image(s) of job cs-explain-earlier (a/scene1.png, b/scene2.png, b/scene3.png) were "
            f"explained again by a later run in s3://{aws.bucket}/explanations (job cs-explain-test), whose files "
            "replaced this job's there: merge the latest job, or give each job its own --out prefix"
            ) in " ".join(refused.output.split()), refused.output
    missing = CliRunner().invoke(clearsight, ["explain-merge", "--out", f"s3://{aws.bucket}/explanations",
                                              "--job-name", "cs-explain-other"], obj=aws.session)
    assert missing.exit_code == 1
    assert (f"Error: merge: no manifest of job cs-explain-other in s3://{aws.bucket}/explanations (it holds job "
            "cs-explain-earlier: 2; job cs-explain-test: 1): did that job write there, and has it ended?"
            ) in " ".join(missing.output.split()), missing.output


IMAGES_ARE_NOT_PASSED = "IMAGE arguments are not passed to the job: its images are the objects under --images; give " \
    "only explain options after '--'"


@pytest.mark.parametrize("extra, message", [
    (["--", "--num-samples", "2"], f"{EXPLAIN_OPTIONS_ERROR}num_samples must be in [4, 1000000], got 2"),
    (["--", "--bogus"], f"{EXPLAIN_OPTIONS_ERROR}No such option '--bogus'"),
    (["--instance-count", "0"], "'--instance-count': 0: an integer in [1, 100]"),
    # review 43: these named '--volume-size-gb' and '--max-runtime-seconds', options no --help lists
    (["--volume-size", "0"], "Invalid value for '--volume-size': 0: an integer in [1, 16384]"),
    (["--max-runtime", "-1"], "Invalid value for '--max-runtime': -1: an integer in [1, 432000]"),
    (["--instance-type", "c5.xlarge"], "'--instance-type': 'c5.xlarge': an ml.* instance type"),
    # review 43: refused as not s3://BUCKET/PREFIX, which it is; and `clearsight explain`'s endpoint spelling
    (["--images", "s3://b/p"], "Invalid value for '--images': 's3://b/p': an S3 location s3://BUCKET/PREFIX (bucket "
                               "name 'b' is not one: 3-63 lower-case letters, digits, dots and hyphens"),
    (["--endpoint", "sagemaker:shapes-detector"], "Invalid value for '--endpoint': 'sagemaker:shapes-detector': a "
     "SageMaker endpoint name: 1-63 letters, digits and hyphens (drop the sagemaker: prefix: explain-job takes the "
     "endpoint's name)"),
    # the job's own options were refused as "Invalid value for '--explain-args'", the others as EXPLAIN_ARGS
    (["--", "--shard", "0/2"],
     f"{EXPLAIN_OPTIONS_ERROR}'--shard 0/2': leave out --shard: the job shares the images among its instances "
     "itself (explain-job --instance-count)"),
    # review 34: "explain options other than --workers (the job sets them)" read as what was expected; review 35:
    # "the job sets it" was untrue of --workers, and a repeated option was named twice
    (["--", "--workers=2", "--workers", "3", "--endpoint", "x", "--no-report"],
     f"{EXPLAIN_OPTIONS_ERROR}'--workers=2 --workers 3 --endpoint x --no-report': leave out --endpoint: "
     "explain-job's own --endpoint names it; leave out --no-report: the job's worker sets it; leave out --workers: "
     "each instance runs one explain process (more machines: explain-job --instance-count; more images at once: "
     "-- --images-in-flight)"),
    (["--", "--allow-partial"], f"{EXPLAIN_OPTIONS_ERROR}'--allow-partial': leave out --allow-partial: explain-job's "
                                "own --allow-partial (give it before --)"),
    # every instance of the job failed on them: "Path '/tmp/lp/shapes_0.png' does not exist"
    (["--", "/tmp/lp/shapes_0.png"], f"{EXPLAIN_OPTIONS_ERROR}/tmp/lp/shapes_0.png: {IMAGES_ARE_NOT_PASSED}"),
    (["--", "--num-samples", "16", "examples/shapes/samples/shapes_0.png", "s3://imgs/more"],
     f"{EXPLAIN_OPTIONS_ERROR}examples/shapes/samples/shapes_0.png, s3://imgs/more: {IMAGES_ARE_NOT_PASSED}"),
    (["--", "--num-samples", "16", "--", "-odd.png"], f"{EXPLAIN_OPTIONS_ERROR}-odd.png: {IMAGES_ARE_NOT_PASSED}"),
])
def test_explain_job_usage_errors(aws, extra, message):
    result = CliRunner().invoke(clearsight, job_args(aws, *extra), obj=aws.session)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "EXPLAIN_ARGS" not in result.output and "--explain-args" not in result.output
    assert aws.calls == []  # refused before any AWS call: nothing uploaded or started


@pytest.mark.parametrize("images, out, reason", [
    # the job's uploads and heat maps became images of the job and of later jobs on the same --images
    ("s3://{bucket}/photos", "s3://{bucket}/photos/explained",
     "it lies inside --images s3://{bucket}/photos, and every object under --images is an image of the job (and "
     "of later jobs on the same --images): the job's code, wheelhouse and explanations would be explained as "
     "images; give --out a prefix outside --images, such as s3://{bucket}/photos-explained"),
    ("s3://{bucket}/photos/", "s3://{bucket}/photos/a/b/", "it lies inside --images s3://{bucket}/photos/"),
    ("s3://{bucket}/photos", "s3://{bucket}/photos/", "it is --images itself"),
    ("s3://{bucket}", "s3://{bucket}/x", "it lies inside --images s3://{bucket}, and every object under --images "
     "is an image of the job (and of later jobs on the same --images): the job's code, wheelhouse and "
     "explanations would be explained as images; --images is a whole bucket: give --out a prefix in another "
     "bucket"),
    ("s3://{bucket}/", "s3://{bucket}", "it is --images itself"),
    ("s3://{bucket}/x/photos", "s3://{bucket}/x", "it holds --images s3://{bucket}/x/photos, and the job writes "
     "its code, wheelhouse and explanations under --out, among those images; give --out a prefix outside "
     "--images, such as s3://{bucket}/x/photos-explained"),
    ("s3://{bucket}/photos", "s3://{bucket}", "it holds --images s3://{bucket}/photos"),
])
def test_explain_job_refuses_an_out_and_images_that_overlap(aws, images, out, reason):
    args = job_args(aws)
    args[args.index("--images") + 1] = images.format(bucket=aws.bucket)
    args[args.index("--out") + 1] = out.format(bucket=aws.bucket)
    result = CliRunner().invoke(clearsight, args, obj=aws.session)
    assert result.exit_code == 2, result.output
    assert (f"Error: Invalid value for '--out': '{out.format(bucket=aws.bucket)}': "
            f"{reason.format(bucket=aws.bucket)}") in " ".join(result.output.split()), result.output
    assert aws.calls == []


@pytest.mark.parametrize("images, out", [
    ("s3://{bucket}/photos", "s3://{bucket}/photos-explained"),  # prefixes are folders: photos/ is apart
    ("s3://{bucket}/photos-private", "s3://{bucket}/photos"),
    ("s3://{bucket}/images", "s3://other-bucket/images"),
])
def test_explain_job_takes_an_out_beside_images(aws, images, out):
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.create_bucket(Bucket="other-bucket")
    for key in ("images/a.png", "photos/a.png", "photos-private/a.png"):
        aws.clients.s3.put_object(Bucket=aws.bucket, Key=key, Body=b"png")
    args = job_args(aws, "--no-wait")
    args[args.index("--images") + 1] = images.format(bucket=aws.bucket)
    args[args.index("--out") + 1] = out.format(bucket=aws.bucket)
    result = CliRunner().invoke(clearsight, args, obj=aws.session)
    assert result.exit_code == 0, result.output


def test_a_job_name_in_use_is_refused_before_the_uploads(aws, monkeypatch):
    # found by CreateProcessingJob after the wheel and the 115 MB wheelhouse were uploaded (then rolled back)
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    assert CliRunner().invoke(clearsight, job_args(aws, "--no-wait"), obj=aws.session).exit_code == 0
    built, before, first_call = [], aws.state(), len(aws.calls)
    monkeypatch.setattr("clearsight.processing.build_job_uploads", lambda **kwargs: built.append(kwargs))
    result = CliRunner().invoke(clearsight, job_args(aws, "--no-wait"), obj=aws.session)
    assert result.exit_code == 1, result.output
    assert result.output == ("Error: check-job-name: a processing job named cs-explain-test already exists in "
                             "us-east-1 (names are unique per account and region and cannot be reused): nothing "
                             "was uploaded or started; choose another --job-name\n")
    assert built == [] and ("s3", "PutObject") not in aws.calls[first_call:]
    assert aws.state() == before


def test_explain_job_refuses_options_naming_local_files(aws, tmp_path):
    aws.serving_endpoint("shapes-detector")
    # The job receives the images, its code and its wheelhouse: a local baseline image, labels
    # file, Clarify config or endpoint map was forwarded as a path the container never has, and
    # the job failed after the instance was paid for.
    labels = tmp_path / "labels.txt"
    labels.write_text("square\ncorner\n")
    config = tmp_path / "analysis_config.json"
    config.write_text(json.dumps({**sdk_analysis_config("OBJECT_DETECTION", ["square", "corner"]),
                                  "dataset_uri": str(tmp_path)}))
    baseline = Path(__file__).resolve().parents[2] / "examples" / "shapes" / "samples" / "shapes_0.png"
    for extra, reason in (
            (["--baseline", str(baseline)], f"--baseline {baseline} is a local image"),
            (["--label-headers", str(labels)], "--label-headers reads a local file"),
            ([f"--label-headers={labels}"], "--label-headers reads a local file"),
            (["--clarify-config", str(config)], "--clarify-config reads a local file (give its settings as options: "
                                                "explain-job --task detection ... -- --num-segments 4 --segment-compactness 5.0 --num-samples 16 --seed 1 "
                                                "--label-headers square,corner --content-type application/x-npy "
                                                "--accept application/json)"),  # review 32
            (["--endpoint-map", "shapes-detector=http://127.0.0.1:9"], "--endpoint-map names local models")):
        result = CliRunner().invoke(clearsight, job_args(aws, "--", *extra), obj=aws.session)
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert reason in output and "not files of this machine" in output, output
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls
    # names and built-in baselines travel as text
    result = CliRunner().invoke(clearsight, job_args(aws, "--", "--label-headers", "square,corner",
                                                     "--baseline", "blur", "--no-wait"), obj=aws.session)
    assert "not files of this machine" not in result.output


def test_an_s3_baseline_goes_to_the_job_as_its_uri_once_it_is_found(aws):
    """A Clarify notebook's baseline is an S3 object: it was refused ("must be one of noise, ... or an existing
    image file"), and a local copy is refused by design. The job's workers read it with the job's role."""
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="baselines/noise rgb.png", Body=png_bytes(0))
    missing = CliRunner().invoke(clearsight, job_args(aws, "--no-wait", "--", "--baseline",
                                                      f"s3://{aws.bucket}/baselines/gone.png"), obj=aws.session)
    assert missing.exit_code == 1, missing.output
    assert (f"check-s3-object: --baseline image s3://{aws.bucket}/baselines/gone.png not found: nothing was "
            "uploaded or started") in " ".join(missing.output.split())
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls
    result = CliRunner().invoke(clearsight, job_args(aws, "--no-wait", "--", "--baseline",
                                                     f"s3://{aws.bucket}/baselines/noise rgb.png"), obj=aws.session)
    assert result.exit_code == 0, result.output
    job = aws.clients.sagemaker.describe_processing_job(ProcessingJobName="cs-explain-test")
    assert job["AppSpecification"]["ContainerArguments"][-2:] == [
        "--baseline", f"s3://{aws.bucket}/baselines/noise rgb.png"]


def test_explain_settings_of_the_environment_reach_the_job_as_options(aws):
    """CLEARSIGHT_EXPLAIN_* variables were read when the options were checked, then left out of the job:
    it ran 500 samples when 100 were set. An exported endpoint map failed every explain-job, naming
    --endpoint-map, which was never typed."""
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    env = {"CLEARSIGHT_EXPLAIN_NUM_SAMPLES": "100", "CLEARSIGHT_EXPLAIN_BASELINE": "black",
           "CLEARSIGHT_EXPLAIN_LABEL_HEADERS": "circle,square,triangle", "CLEARSIGHT_EXPLAIN_METRICS": "true",
           "CLEARSIGHT_EXPLAIN_ENDPOINT_MAP": "shapes-detector=http://127.0.0.1:9",
           "CLEARSIGHT_EXPLAIN_WORKERS": "4",
           # explain-job gives these itself; the same task as the job's is no conflict (review 29, finding 2)
           "CLEARSIGHT_EXPLAIN_ENDPOINT": "http://127.0.0.1:8080", "CLEARSIGHT_EXPLAIN_OUT": "explanations",
           "CLEARSIGHT_EXPLAIN_TASK": "Detection"}
    result = CliRunner().invoke(clearsight, job_args(aws, "--no-wait", "--", "--seed", "3"), env=env,
                                obj=aws.session)
    assert result.exit_code == 0, result.output
    job = aws.clients.sagemaker.describe_processing_job(ProcessingJobName="cs-explain-test")
    assert job["AppSpecification"]["ContainerArguments"] == [
        "--job-name", "cs-explain-test", "--endpoint", "sagemaker:shapes-detector", "--task", "detection",
        "--seed", "3", "--num-samples", "100", "--baseline", "black", "--label-headers", "circle,square,triangle",
        "--metrics"]
    stderr = " ".join(result.stderr.split())
    assert ("Warning: CLEARSIGHT_EXPLAIN_ENDPOINT_MAP is set but the job does not use it: its workers call "
            "SageMaker endpoint --endpoint") in stderr
    assert ("Warning: CLEARSIGHT_EXPLAIN_WORKERS is set but not passed to the job (--workers): each instance runs "
            "one explain process") in stderr
    for variable, option in (("CLEARSIGHT_EXPLAIN_ENDPOINT", "--endpoint"), ("CLEARSIGHT_EXPLAIN_OUT", "--out")):
        assert (f"Warning: {variable} is set but not passed to the job: the job's {option} is explain-job's"
                in stderr)
    assert "CLEARSIGHT_EXPLAIN_TASK" not in stderr


def test_an_explain_task_of_the_environment_that_is_not_the_jobs_is_refused(aws):
    """review 29, finding 2: CLEARSIGHT_EXPLAIN_TASK=classification was ignored without a word, and the job
    explained a classifier as a detector (explain-job's --task reads CLEARSIGHT_TASK, default detection)."""
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    result = CliRunner().invoke(clearsight, job_args(aws, "--no-wait"), obj=aws.session,
                                env={"CLEARSIGHT_EXPLAIN_TASK": "classification"})
    assert result.exit_code == 2, result.output
    assert (EXPLAIN_OPTIONS_ERROR + "CLEARSIGHT_EXPLAIN_TASK=classification, but the job explains --task detection: "
            "give explain-job --task classification (or set CLEARSIGHT_TASK), or unset CLEARSIGHT_EXPLAIN_TASK"
            ) in " ".join(result.output.split()), result.output
    assert result.output.count("Invalid value for") == 1, result.output  # review 30: the prefix came twice
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls


@pytest.mark.parametrize("value, message", [
    ("detectoin", "CLEARSIGHT_EXPLAIN_TASK='detectoin' is not a task (detection or classification); the job explains "
                  "--task detection: unset CLEARSIGHT_EXPLAIN_TASK or set it to detection"),
    ("   ", None),  # blank: as if unset (review 30: the hint read "give explain-job --task  ...")
])
def test_a_blank_or_unknown_explain_task_of_the_environment(aws, value, message):
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    result = CliRunner().invoke(clearsight, job_args(aws, "--no-wait"), obj=aws.session,
                                env={"CLEARSIGHT_EXPLAIN_TASK": value})
    if message is None:
        assert result.exit_code == 0, result.output
        assert "CLEARSIGHT_EXPLAIN_TASK" not in result.output
        return
    assert result.exit_code == 2, result.output
    assert EXPLAIN_OPTIONS_ERROR + message in " ".join(result.output.split()), result.output
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls


@pytest.mark.parametrize("variable, value, message", [
    ("CLEARSIGHT_EXPLAIN_NUM_SAMPLES", "abc", "'abc' is not a valid integer"),
    ("CLEARSIGHT_EXPLAIN_NUM_SAMPLES", "2", f"{EXPLAIN_OPTIONS_ERROR}num_samples must be in [4, 1000000], got 2"),
    ("CLEARSIGHT_EXPLAIN_BASELINE", "{image}",
     EXPLAIN_OPTIONS_ERROR + "CLEARSIGHT_EXPLAIN_BASELINE={image} is a local image"),
    ("CLEARSIGHT_EXPLAIN_LABEL_HEADERS", "{labels}",
     EXPLAIN_OPTIONS_ERROR + "CLEARSIGHT_EXPLAIN_LABEL_HEADERS={labels} reads a local file"),
    ("CLEARSIGHT_EXPLAIN_CLARIFY_CONFIG", "{config}",
     EXPLAIN_OPTIONS_ERROR + "CLEARSIGHT_EXPLAIN_CLARIFY_CONFIG={config} reads a local file"),
])
def test_unusable_explain_settings_of_the_environment_are_named(aws, tmp_path, variable, value, message):
    labels = tmp_path / "labels.txt"
    labels.write_text("square\ncorner\n")
    config = tmp_path / "analysis_config.json"
    config.write_text(json.dumps(sdk_analysis_config("OBJECT_DETECTION", ["square", "corner"])))
    image = tmp_path / "noise.png"
    image.write_bytes(png_bytes(0))
    paths = {"image": image, "labels": labels, "config": config}
    result = CliRunner().invoke(clearsight, job_args(aws), env={variable: value.format(**paths)}, obj=aws.session)
    assert result.exit_code == 2, result.output
    assert message.format(**paths) in " ".join(result.output.split()), result.output
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls


def merge(aws, *extra):
    return CliRunner().invoke(clearsight, ["explain-merge", "--out", f"s3://{aws.bucket}/explanations", *extra],
                              obj=aws.session)


def test_a_merge_names_missing_hosts_unfinished_images_and_a_job_that_did_not_complete(aws, tmp_path,
                                                                                       tiny_detector_dir):
    """explain-merge merged whatever manifests it found: a 2-host job whose algo-2 left nothing, or a Stopped
    job, was reported as a whole one (exit 0), and a stopped worker's staging files were never mentioned."""
    aws.serving_endpoint("shapes-detector")
    for key in KEYS:
        aws.clients.s3.put_object(Bucket=aws.bucket, Key=f"images/{key}", Body=b"png")
    started = CliRunner().invoke(clearsight, job_args(aws, "--no-wait", "--", *EXPLAIN_OPTIONS), obj=aws.session)
    assert started.exit_code == 0, started.output  # InstanceCount 2; moto's jobs are Completed at once
    hosts = ["algo-1", "algo-2"]
    shares = {host: [key for key in KEYS if shard_of(key, 2) == index] for index, host in enumerate(hosts)}
    for host in hosts:
        run_worker(processing_layout(tmp_path, host, hosts, shares[host]), tiny_detector_dir, "cs-explain-test")
    upload_outputs(aws, tmp_path / "algo-1/opt/ml/processing/output")
    staging = ".staging-41@ip-10-0-0-2-k3x/b__scene3.png_shap.npz"
    aws.clients.s3.put_object(Bucket=aws.bucket, Key=f"explanations/{staging}", Body=b"npz")
    out = f"s3://{aws.bucket}/explanations"
    missing_host = (f"1 of the job's 2 host(s) wrote no manifest to {out} (algo-2): their images are not in "
                    "this report")
    unfinished = (f"1 file(s) of unfinished images under {out}, which a worker was writing when it "
                  f"stopped (not in this report): {staging}")

    partial = merge(aws, "--job-name", "cs-explain-test")
    assert partial.exit_code == 1, partial.output
    output = " ".join(partial.output.split())
    assert f"WARNING: {missing_host}" in output and f"WARNING: {unfinished}" in output
    assert (f"Error: the report is of part of the job: {missing_host}. the report is of part of the job: "
            f"{unfinished}. Add --allow-partial to exit 0 on such runs") in output
    assert s3_json(aws, "explanations/analysis.json")["totals"]["images"] == len(shares["algo-1"])
    allowed = merge(aws, "--job-name", "cs-explain-test", "--allow-partial")
    assert allowed.exit_code == 0 and missing_host in " ".join(allowed.output.split()), allowed.output
    # the files say so too, at the top of the report: whoever opens it was not at the terminal
    assert s3_json(aws, "explanations/analysis.json")["totals"]["incomplete"] == [missing_host, unfinished]
    report = aws.clients.s3.get_object(Bucket=aws.bucket, Key="explanations/report.html")["Body"].read().decode()
    assert (f"<h1>clearsight explanation report</h1>\n<div class=warning><p><strong>This report is of part of the "
            f"run only:</strong></p><ul><li>{html.escape(missing_host)}</li><li>{html.escape(unfinished)}</li>"
            ) in report

    upload_outputs(aws, tmp_path / "algo-2/opt/ml/processing/output")
    aws.clients.s3.delete_object(Bucket=aws.bucket, Key=f"explanations/{staging}")  # its worker finished it
    whole = merge(aws, "--job-name", "cs-explain-test")
    assert whole.exit_code == 0, whole.output
    assert "host(s) wrote no manifest" not in whole.output
    assert s3_json(aws, "explanations/analysis.json")["totals"]["images"] == len(KEYS)
    assert "incomplete" not in s3_json(aws, "explanations/analysis.json")["totals"]

    from moto.sagemaker.models import sagemaker_backends

    job = sagemaker_backends[aws.account][aws.region].processing_jobs["cs-explain-test"]
    job.processing_job_status = "Stopped"
    stopped = merge(aws, "--job-name", "cs-explain-test")
    assert stopped.exit_code == 1, stopped.output
    assert ("Error: the report is of part of the job: processing job cs-explain-test is Stopped, not Completed: "
            "its hosts may not have finished their images.") in " ".join(stopped.output.split())


@pytest.mark.parametrize("case", ["before the job", "after the job", "of a finished image", "job unknown"])
def test_staging_files_that_are_not_this_jobs_are_named_but_do_not_count(case, aws, tmp_path, tiny_detector_dir):
    """A staging folder's name does not carry the job: files another stopped job left on the same --out
    (earlier, or later when an earlier job is merged by --job-name) were counted as this job's unfinished
    images, and so were all of them when SageMaker could not describe the job."""
    import datetime as dt

    from moto.sagemaker.models import sagemaker_backends

    job_name = "cs-explain-gone" if case == "job unknown" else "cs-explain-test"
    hosts = ["algo-1"] if case == "job unknown" else ["algo-1", "algo-2"]
    if case != "job unknown":
        aws.serving_endpoint("shapes-detector")
        for key in KEYS:
            aws.clients.s3.put_object(Bucket=aws.bucket, Key=f"images/{key}", Body=b"png")
        started = CliRunner().invoke(clearsight, job_args(aws, "--no-wait", "--", *EXPLAIN_OPTIONS),
                                     obj=aws.session)
        assert started.exit_code == 0, started.output
    for index, host in enumerate(hosts):
        layout = processing_layout(tmp_path, host, hosts, [key for key in KEYS if shard_of(key, len(hosts)) == index])
        run_worker(layout, tiny_detector_dir, job_name)
        upload_outputs(aws, tmp_path / f"{host}/opt/ml/processing/output")
    staging = ".staging-7@ip-10-0-0-9-old/a__scene1.png_stray.npz"
    if case == "of a finished image":
        manifest = aws.clients.s3.get_object(Bucket=aws.bucket, Key=f"explanations/manifest-{job_name}@algo-1.jsonl")
        entry = next(json.loads(line) for line in manifest["Body"].read().decode().splitlines()
                     if json.loads(line).get("status") == "explained")
        staging = f".staging-7@ip-10-0-0-9-old/{entry['files'][0]}"
    aws.clients.s3.put_object(Bucket=aws.bucket, Key=f"explanations/{staging}", Body=b"npz")
    if case in ("before the job", "after the job"):
        job = sagemaker_backends[aws.account][aws.region].processing_jobs[job_name]
        shift = dt.timedelta(minutes=5)
        if case == "before the job":  # the file is older than the job
            job.creation_time, job.processing_end_time = job.creation_time + shift, job.processing_end_time + shift
        else:  # the job ended long before the file was written (a later job's)
            job.creation_time, job.processing_end_time = job.creation_time - shift, job.processing_end_time - shift
    result = merge(aws, "--job-name", job_name)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "WARNING: 1 file(s) of unfinished images" not in output
    whose = ("whose they are is not known: SageMaker cannot describe the job" if case == "job unknown"
             else f"written outside job {job_name}'s run, or of images it finished: not this job's")
    assert (f"1 file(s) under s3://{aws.bucket}/explanations in staging folders of a run stopped while writing "
            f"them ({whose}): {staging}") in output
    assert "incomplete" not in s3_json(aws, "explanations/analysis.json")["totals"]


def test_a_merge_of_a_job_sagemaker_does_not_know_says_so_and_merges(aws, tmp_path, tiny_detector_dir):
    run_worker(processing_layout(tmp_path, "algo-1", ["algo-1"], KEYS[:2]), tiny_detector_dir, "cs-explain-gone")
    upload_outputs(aws, tmp_path / "algo-1/opt/ml/processing/output")
    result = merge(aws)
    assert result.exit_code == 0, result.output
    assert ("processing job cs-explain-gone is not known to SageMaker in this region (deleted, or another region "
            "or account): merging its manifests without checking that the job completed and that every host's "
            "outputs are there") in " ".join(result.output.split())


def test_the_merge_command_explain_job_prints_can_be_pasted(aws):
    """With a space in --out the printed command split it in two: `Got unexpected extra argument (1)`."""
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    args = job_args(aws, "--no-wait")
    args[args.index("--out") + 1] = f"s3://{aws.bucket}/run 1"
    started = CliRunner().invoke(clearsight, args, obj=aws.session)
    assert started.exit_code == 0, started.output
    command = re.search(r"merge its outputs when it ends with `([^`]*)`", started.stderr).group(1)
    program, *pasted = shlex.split(command)
    assert program == "clearsight" and pasted == [
        "explain-merge", "--out", f"s3://{aws.bucket}/run 1", "--job-name", "cs-explain-test"]
    merged = CliRunner().invoke(clearsight, pasted, obj=aws.session)  # nothing written there yet
    assert f"Error: merge: no manifest*.jsonl in s3://{aws.bucket}/run 1: nothing to merge" in merged.output


def test_merge_of_a_prefix_no_job_wrote_names_the_s3_location(aws):
    # The message named the temporary download folder, deleted by then.
    result = CliRunner().invoke(clearsight, ["explain-merge", "--out", f"s3://{aws.bucket}/nothing-here"],
                                obj=aws.session)
    assert result.exit_code == 1, result.output
    assert (f"Error: merge: no manifest*.jsonl in s3://{aws.bucket}/nothing-here: nothing to merge"
            in result.output), result.output
    assert "clearsight-merge-" not in result.output


def test_failed_job_exits_1_with_the_reason(aws, monkeypatch):
    aws.serving_endpoint("shapes-detector")
    from moto.sagemaker.models import FakeProcessingJob

    original = FakeProcessingJob.__init__

    def failing(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.processing_job_status = "Failed"

    monkeypatch.setattr(FakeProcessingJob, "__init__", failing)
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    result = CliRunner().invoke(clearsight, job_args(aws), obj=aws.session)
    assert result.exit_code == 1
    assert "Error: processing job cs-explain-test ended Failed" in result.output


def test_explain_over_an_s3_prefix_resumes(aws, tmp_path, tiny_detector_dir):
    for index, key in enumerate(KEYS[:3]):
        aws.clients.s3.put_object(Bucket=aws.bucket, Key=f"photos/{key}", Body=png_bytes(index))
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="photos/notes.txt", Body=b"not an image")
    args = ["--endpoint", str(tiny_detector_dir), "--task", "detection", "--out", str(tmp_path / "out"),
            "--quiet", *EXPLAIN_OPTIONS, f"s3://{aws.bucket}/photos"]
    first = CliRunner().invoke(explain_main, args, prog_name="python -m explain")
    assert first.exit_code == 0, first.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert [item["image"] for item in analysis["images"]] == [f"s3://{aws.bucket}/photos/{key}" for key in KEYS[:3]]
    reference = {path.name: np.load(path)["shap_values"] for path in (tmp_path / "out").glob("*.npz")}
    (tmp_path / "out" / "a__scene0.png_shap.npz").unlink()  # an output lost: that image is redone
    second = CliRunner().invoke(explain_main, args, prog_name="python -m explain")
    assert second.exit_code == 0, second.output
    assert "2 image(s) were finished by an earlier run and skipped" in second.stdout
    for name, values in reference.items():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / name)["shap_values"], values)


def test_in_process_model_splits_batches_under_the_handler_body_limit(tiny_detector_dir):
    from explain.predictors import InProcessPredictor

    predictor = InProcessPredictor(tiny_detector_dir, "detection", batch_size=64)
    images = np.zeros((40, 320, 320, 3), dtype=np.uint8)  # 12.3 MB as one npy: over 6,553,500 bytes
    results = predictor(images)
    assert len(results) == 40
    stats = predictor.stats
    assert stats["requests"] == 2 and stats["failed_requests"] == 0
    assert stats["max_request_bytes"] <= 6_553_500


def test_explain_job_without_images_creates_nothing(aws):
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/notes.txt", Body=b"text")
    result = CliRunner().invoke(clearsight, job_args(aws), obj=aws.session)
    assert result.exit_code == 1
    assert f"Error: no .jpg/.jpeg/.png objects under s3://{aws.bucket}/images" in result.output
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls


@pytest.mark.parametrize("status, failure_reason, expected", [
    (None, None, "endpoint no-such-endpoint in us-east-1 not found"),
    ("Creating", None, "endpoint no-such-endpoint in us-east-1 is Creating, not InService"),
    ("Failed", "image not found", "endpoint no-such-endpoint in us-east-1 is Failed (image not found), not InService"),
])
def test_explain_job_for_an_endpoint_that_cannot_answer_uploads_and_starts_nothing(aws, status, failure_reason,
                                                                                   expected):
    # The job was created (and billed) for a misspelt endpoint after a 115 MB upload; every image then failed.
    if status is not None:
        aws.serving_endpoint("no-such-endpoint", status, failure_reason)
    aws.serving_endpoint("shapes-detector")  # another endpoint exists: only the named one counts
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    before, first_call = aws.state(), len(aws.calls)
    args = job_args(aws)
    args[args.index("shapes-detector")] = "no-such-endpoint"
    result = CliRunner().invoke(clearsight, [*args, "--no-wait"], obj=aws.session)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: check-endpoint: {expected}: nothing was uploaded or started; " + (
        "check --endpoint and --region (`clearsight deploy sagemaker list` shows clearsight's endpoints)"
        if status is None else
        "run again once it is InService (`clearsight deploy sagemaker status --name no-such-endpoint`)")], result.output
    calls = aws.calls[first_call:]
    assert ("sagemaker", "DescribeEndpoint") in calls
    assert ("sagemaker", "CreateProcessingJob") not in calls and ("s3", "PutObject") not in calls
    assert aws.state() == before


@pytest.mark.parametrize("status", ["InService", "Updating"])
def test_explain_job_starts_for_an_endpoint_that_answers(aws, status):
    aws.serving_endpoint("shapes-detector", status)
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    result = CliRunner().invoke(clearsight, [*job_args(aws), "--no-wait"], obj=aws.session)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "cs-explain-test"
    assert ("sagemaker", "CreateProcessingJob") in aws.calls


def test_explain_job_names_an_images_bucket_that_does_not_exist(aws):
    # the line said "list-images: NoSuchBucket: The specified bucket does not exist", naming no bucket
    aws.serving_endpoint("shapes-detector")
    args = job_args(aws)
    args[args.index("--images") + 1] = "s3://no-such-images-bucket/images"
    result = CliRunner().invoke(clearsight, args, obj=aws.session)
    assert result.exit_code == 1, result.output
    assert result.output == ("Error: list-images: cannot list s3://no-such-images-bucket/images: NoSuchBucket: "
                             "The specified bucket does not exist\n")


def test_explain_job_checks_the_out_bucket_before_building_its_uploads(aws, monkeypatch):
    # an --out bucket that does not exist was found only after the wheel was built and the
    # wheelhouse (about 110 MB) downloaded
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    built = []
    monkeypatch.setattr("clearsight.processing.build_job_uploads", lambda **kwargs: built.append(kwargs))
    args = job_args(aws)
    args[args.index("--out") + 1] = "s3://no-such-out-bucket/explanations"
    result = CliRunner().invoke(clearsight, args, obj=aws.session)
    assert result.exit_code == 1, result.output
    assert "Error: upload-code: S3 bucket no-such-out-bucket of --out does not exist" in result.output
    assert built == []


@pytest.mark.parametrize("extra, env, reason", [
    ([], {"AWS_ENDPOINT_URL": "notaurl"}, "Invalid endpoint: notaurl"),
    (["--endpoint-url", "127.0.0.1:5000"], {}, "Invalid endpoint: 127.0.0.1:5000"),
])
def test_explain_job_with_unusable_aws_settings_is_one_line(aws, extra, env, reason):
    # boto3 refuses them when the clients are made: that was a ValueError traceback
    result = CliRunner().invoke(clearsight, job_args(aws, *extra), env=env, obj=aws.session)
    assert result.exit_code == 2, result.output
    assert reason in result.output and "Traceback" not in result.output
    assert "check --region and the AWS endpoint URL" in result.output


def test_explain_job_on_one_image_object_says_that_images_is_a_prefix(aws):
    # "no .jpg/.jpeg/.png objects under s3://BUCKET/images/a.png" while that object exists
    aws.serving_endpoint("shapes-detector")
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="images/a.png", Body=b"png")
    args = job_args(aws)
    args[args.index("--images") + 1] = f"s3://{aws.bucket}/images/a.png"
    result = CliRunner().invoke(clearsight, args, obj=aws.session)
    assert result.exit_code == 1, result.output
    assert result.output == (f"Error: no .jpg/.jpeg/.png objects under s3://{aws.bucket}/images/a.png/: --images "
                             "is a prefix (a folder of images), not one image: give its folder, or run "
                             "`clearsight explain` on one image\n")
    assert ("sagemaker", "CreateProcessingJob") not in aws.calls
