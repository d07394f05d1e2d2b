"""What a Processing job installs: the tested pins exactly, a reproducible project wheel, a wheelhouse of nothing else."""

from __future__ import annotations

import configparser
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from clearsight import __version__
from clearsight.job_bundle import JOB_PINS, build_job_uploads, build_project_wheel

ROOT = Path(__file__).resolve().parents[2]


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[canonicalize_name(name)] = version
    return found


def test_the_job_pins_are_the_tested_versions():
    tested = pins((ROOT / "constraints.txt").read_text().splitlines())
    job = pins(JOB_PINS)
    assert {name: tested.get(name) for name in job} == job


def test_the_job_pins_are_the_whole_explain_only_install():
    """setup.cfg's install_requires (the explain-only install, boto3 included) and all they pull in, here."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    todo = [Requirement(line) for line in config["options"]["install_requires"].split("\n") if line.strip()]
    closure = {}
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in closure:
            continue
        distribution = metadata.distribution(requirement.name)
        closure[name] = distribution.version
        for text in distribution.requires or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                todo.append(needed)
    assert pins(JOB_PINS) == closure


@pytest.mark.integration  # runs pip
def test_the_project_wheel_is_reproducible_and_holds_the_packages(tmp_path):
    first = build_project_wheel(cache=tmp_path / "one")
    second = build_project_wheel(cache=tmp_path / "two")
    assert first.read_bytes() == second.read_bytes()
    assert first.name == f"clearsight-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(first) as wheel:
        names = wheel.namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"serving", "deploy", "explain", "clearsight", f"clearsight-{__version__}.dist-info"}
    assert "explain/processing_worker.py" in names and not any("tests" in name for name in names)
    assert build_project_wheel(cache=tmp_path / "one") == first  # cached: not built again


@pytest.mark.integration  # runs pip (once; build/job caches it)
def test_the_wheelhouse_holds_exactly_the_pinned_wheels():
    uploads = build_job_uploads()
    with tarfile.open(uploads.wheelhouse) as archive:
        members = archive.getmembers()
        constraints = archive.extractfile("constraints.txt").read().decode()
    assert all(member.mtime == 0 and member.isfile() for member in members)
    wheels = [member.name for member in members if member.name.endswith(".whl")]
    found = {canonicalize_name(name.split("-")[0]): name.split("-")[1] for name in wheels}
    assert found == pins(JOB_PINS) and pins(constraints.splitlines()) == pins(JOB_PINS)
    assert all(("cp311" in name and "x86_64" in name) or name.endswith("-none-any.whl") for name in wheels)
