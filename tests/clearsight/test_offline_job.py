"""The Processing job as SageMaker would run it, offline: the uploads laid out as /opt/ml/processing, the
entry point of the job request run by bash with a fresh Python 3.11 and no package index, two hosts, one merge.

What is not SageMaker here: the container (this machine's x86_64 Linux, with a fresh virtual environment
playing the image's python3), the endpoint (a local `deploy serve` over HTTP instead of sagemaker:NAME)
and S3 (moto, for the merge).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from clearsight.cli import main as clearsight
from clearsight.job_bundle import JOB_PINS, build_job_uploads
from clearsight.processing import PROCESSING_ROOT, ExplainJobConfig, processing_job_request
from tests.explain.test_explainer import red_square_scene

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

HOSTS = {"algo-1": ["a/scene0.png", "b/scene2.png", "scene4.png"],
         "algo-2": ["a/scene1.png", "b/scene3.png", "scene4.jpg"]}  # scene4.png and scene4.jpg on two hosts


def base_python() -> str:
    """A CPython 3.11 interpreter (not a virtual environment's) to make the fresh environment from."""
    if sys.version_info[:2] == (3, 11):
        return getattr(sys, "_base_executable", sys.executable)
    found = shutil.which("python3.11")
    if found is None:
        pytest.skip("no Python 3.11 interpreter here: the job's wheelhouse is for CPython 3.11")
    return found


@pytest.fixture(scope="module")
def uploads():
    """The project wheel and the wheelhouse explain-job uploads (built once, cached in build/job)."""
    return build_job_uploads()


@pytest.fixture(scope="module")
def image_python(tmp_path_factory) -> Path:
    """The bin folder of a fresh Python 3.11 virtual environment: the job image's python3."""
    venv = tmp_path_factory.mktemp("image") / "python"
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    return venv / "bin"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def image_bytes(key: str, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(red_square_scene(seed=seed)).save(buffer, format="JPEG" if key.endswith(".jpg") else "PNG")
    return buffer.getvalue()


def lay_out(machine: Path, host: str, request: dict, uploads, keys: list[str]) -> Path:
    """Put what SageMaker downloads where the request's ProcessingInputs say, under ``machine``."""
    local = {item["InputName"]: Path(item["S3Input"]["LocalPath"]) for item in request["ProcessingInputs"]}
    root = machine / Path(PROCESSING_ROOT).relative_to("/")
    for name, path in (("code", uploads.code), ("wheelhouse", uploads.wheelhouse)):
        folder = root / local[name].relative_to(PROCESSING_ROOT)
        folder.mkdir(parents=True)
        shutil.copyfile(path, folder / path.name)  # an S3Prefix input keeps the object's name
    images = root / local["images"].relative_to(PROCESSING_ROOT)
    for key in keys:
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        (images / key).write_bytes(image_bytes(key, len(key) + ord(key[-5])))
    config = machine / "opt/ml/config/resourceconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"current_host": host, "hosts": sorted(HOSTS)}))
    return root


def offline_env(machine: Path, bin_folder: Path, request: dict) -> dict:
    """The job's environment: the request's Environment, the paths redirected into ``machine``, and a
    pip that cannot reach any index (a closed port, no config files)."""
    home = machine / "home"
    home.mkdir()
    return {**request["Environment"], "PATH": f"{bin_folder}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "CLEARSIGHT_PROCESSING_ROOT": str(machine / "opt/ml/processing"),
            "CLEARSIGHT_JOB_HOME": str(machine / "opt/clearsight"),
            "CLEARSIGHT_RESOURCE_CONFIG": str(machine / "opt/ml/config/resourceconfig.json"),
            "PIP_INDEX_URL": f"http://127.0.0.1:{closed_port()}/simple", "PIP_CONFIG_FILE": os.devnull}


def job_request(aws, uploads) -> dict:
    config = ExplainJobConfig(
        job_name="cs-offline", images_url=f"s3://{aws.bucket}/images", endpoint_name="shapes-detector",
        out_url=f"s3://{aws.bucket}/run", role=aws.role_arn, region=aws.region, instance_count=2,
        explain_args=("--num-samples", "16", "--num-segments", "4"))
    return processing_job_request(config, "IMAGE", uploads)


def job_command(request: dict, endpoint_url: str) -> list[str]:
    """The request's entry point and arguments, the endpoint given as an HTTP URL instead of sagemaker:NAME."""
    app = request["AppSpecification"]
    return [*app["ContainerEntrypoint"], *(endpoint_url if argument == "sagemaker:shapes-detector" else argument
                                           for argument in app["ContainerArguments"])]


def run_job(request: dict, machine: Path, env: dict, endpoint_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(job_command(request, endpoint_url), env=env, cwd=machine, capture_output=True, text=True,
                          timeout=900)


def test_two_offline_workers_then_one_merged_report(aws, uploads, image_python, detector_endpoint, tmp_path):
    request = job_request(aws, uploads)
    s3 = aws.clients.s3
    roots, jobs = {}, {}
    for host, keys in HOSTS.items():  # the hosts of a job run at the same time
        machine = tmp_path / host
        roots[host] = lay_out(machine, host, request, uploads, keys)
        with open(tmp_path / f"{host}.stderr", "w") as stderr:  # files: neither job waits on a full pipe
            jobs[host] = subprocess.Popen(job_command(request, detector_endpoint.url), cwd=machine,
                                          env=offline_env(machine, image_python, request),
                                          stdout=subprocess.DEVNULL, stderr=stderr)
    results = {}
    try:
        for host, job in jobs.items():
            job.wait(timeout=900)
            results[host] = subprocess.CompletedProcess(job.args, job.returncode, "",
                                                        (tmp_path / f"{host}.stderr").read_text())
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.kill()
                job.wait()
    for host, keys in HOSTS.items():
        machine, root, result = tmp_path / host, roots[host], results[host]
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{host} (2 host(s) in the job): explaining" in result.stderr

        freeze = subprocess.run([str(machine / "opt/clearsight/venv/bin/python"), "-m", "pip", "freeze"],
                                capture_output=True, text=True, check=True).stdout.splitlines()
        pins = sorted(line.lower() for line in freeze if " @ " not in line)
        assert pins == sorted(pin.lower() for pin in JOB_PINS)  # exactly the pinned versions, nothing else
        assert [line for line in freeze if " @ " in line] == [  # the uploaded wheel, by its sha256
            f"clearsight @ file://{root}/input/code/{uploads.code.name}#sha256={uploads.code_sha256}"]
        output = root / "output"
        manifest = [json.loads(line) for line in
                    (output / f"manifest-cs-offline@{host}.jsonl").read_text().splitlines()]
        assert sorted(entry["key"] for entry in manifest) == sorted(keys)
        assert all(entry["status"] == "explained" for entry in manifest)
        assert not (output / "analysis.json").exists()  # two hosts: the merge writes it
        for path in output.iterdir():  # what SageMaker uploads at the end of the job
            if path.is_file():
                s3.upload_file(str(path), aws.bucket, f"run/{path.name}")

    merged = CliRunner().invoke(clearsight, ["explain-merge", "--out", f"s3://{aws.bucket}/run"], obj=aws.session)
    assert merged.exit_code == 0, merged.output
    analysis = json.loads(s3.get_object(Bucket=aws.bucket, Key="run/analysis.json")["Body"].read())
    assert sorted(item["stem"] for item in analysis["images"]) == [
        "a__scene0.png", "a__scene1.png", "b__scene2.png", "b__scene3.png", "scene4", "scene4.png"]
    report = s3.get_object(Bucket=aws.bucket, Key="run/report.html")["Body"].read().decode()
    assert 'src="scene4_objects.jpeg"' in report and 'src="scene4.png_objects.jpeg"' in report


@pytest.mark.integration  # runs the entry point (no fixture says so)
@pytest.mark.parametrize("tampered", ["code", "wheelhouse"])
def test_a_changed_upload_stops_the_job_before_anything_is_installed(aws, uploads, image_python, tmp_path,
                                                                    tampered):
    request = job_request(aws, uploads)
    machine = tmp_path / "algo-1"
    root = lay_out(machine, "algo-1", request, uploads, HOSTS["algo-1"])
    path = root / "input" / tampered / getattr(uploads, tampered).name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    result = run_job(request, machine, offline_env(machine, image_python, request), "http://127.0.0.1:9")
    assert result.returncode == 3
    expected = getattr(uploads, f"{tampered}_sha256")
    import hashlib

    assert result.stderr.strip() == (
        f"clearsight-worker: {path} has sha256 {hashlib.sha256(bytes(data)).hexdigest()}, but this job was "
        f"created for {expected}: the upload was changed or damaged after the job was defined; nothing was "
        "installed. Start a new job (explain-job uploads it again)")
    assert not (machine / "opt/clearsight").exists()
