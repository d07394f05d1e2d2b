"""What a Processing job installs: the tested pins exactly, a reproducible project wheel, a wheelhouse of nothing else."""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from clearsight import __version__
from clearsight.job_bundle import JOB_PINS, build_job_uploads, build_project_wheel
from deploy.errors import DeployError

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


def pip_install_target(wheel: Path, target: Path) -> None:
    """A non-editable install of ``wheel`` into folder ``target``, offline (what pip install . leaves in site-packages)."""
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)], check=True, timeout=300)


@pytest.mark.integration  # runs pip
def test_a_pip_installed_clearsight_is_zipped_back_into_the_wheel_it_was_installed_from(tmp_path):
    """explain-job from a pip install (no checkout): the job gets the installed files as the same wheel."""
    built = build_project_wheel(cache=tmp_path / "checkout-cache")
    site = tmp_path / "site-packages"
    pip_install_target(built, site)
    assert (site / "bin" / "clearsight").is_file() and (site / f"clearsight-{__version__}.dist-info" / "INSTALLER").is_file()

    rebuilt = build_project_wheel(repo=site, cache=tmp_path / "installed-cache")
    assert rebuilt.name == built.name
    record_name = f"clearsight-{__version__}.dist-info/RECORD"
    with zipfile.ZipFile(built) as original, zipfile.ZipFile(rebuilt) as again:
        assert sorted(again.namelist()) == sorted(original.namelist())
        changed = [name for name in original.namelist() if original.read(name) != again.read(name)]
        assert changed in ([], [record_name])  # RECORD may list the same lines in another order
        record = list(csv.reader(again.read(record_name).decode().splitlines()))
        assert sorted(map(tuple, record)) == sorted(map(tuple, csv.reader(
            original.read(record_name).decode().splitlines())))
        for name, digest, size in record:
            if name != record_name:
                data = again.read(name)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert (digest, size) == (f"sha256={expected}", str(len(data))), name
        assert again.namelist()[-1] == record_name
    assert build_project_wheel(repo=site, cache=tmp_path / "again").read_bytes() == rebuilt.read_bytes()
    assert build_project_wheel(repo=site, cache=tmp_path / "installed-cache") == rebuilt  # cached

    reinstalled = tmp_path / "reinstalled"
    pip_install_target(rebuilt, reinstalled)  # pip accepts it as a wheel
    assert (reinstalled / "explain" / "processing_worker.py").read_bytes() == (
        site / "explain" / "processing_worker.py").read_bytes()

    (site / "deploy" / "gate.py").unlink()
    with pytest.raises(DeployError, match=r"gate\.py, listed in the RECORD of the installed clearsight, is missing; "
                                          r"reinstall it \(pip install --force-reinstall"):
        build_project_wheel(repo=site, cache=tmp_path / "broken")


def test_code_that_is_neither_a_checkout_nor_installed_says_what_explain_job_needs(tmp_path):
    """A copy of the packages without setup.cfg or .dist-info (e.g. on PYTHONPATH): a message, before any AWS call."""
    (tmp_path / "clearsight").mkdir()
    (tmp_path / "clearsight" / "__init__.py").write_text("")
    with pytest.raises(DeployError) as raised:
        build_project_wheel(repo=tmp_path, cache=tmp_path / "cache")
    assert str(raised.value) == (
        f"build-wheel: the clearsight code in {tmp_path} is neither a source checkout (no setup.cfg, "
        "pyproject.toml, README.md) nor a pip-installed distribution (no clearsight-*.dist-info beside it): "
        "explain-job uploads the running code as a wheel; install clearsight with pip (pip install '.[aws]' in "
        "the clearsight checkout) or run it from a checkout (git clone, then make install)")
    assert not (tmp_path / "cache").exists()


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


@pytest.mark.parametrize("row, message", [
    # review 28: a RECORD row reaching out of the packages put a file from outside the install into the job's wheel
    ("explain/../../outside.txt,,", r"lists explain/\.\./\.\./outside\.txt, outside its packages"),
    # a name with a line separator of Unicode's own (U+2028) was cut in two by splitlines: "missing"
    ('"explain/odd\u2028name.py",,', r"odd\u2028name\.py, listed in the RECORD of the installed clearsight, is missing"),
])
def test_odd_record_rows_of_an_installed_clearsight_are_read_as_written(tmp_path, row, message):
    site = tmp_path / "site"
    info = site / f"clearsight-{__version__}.dist-info"
    info.mkdir(parents=True)
    (site / "explain").mkdir()
    (site / "explain" / "api.py").write_text("")
    (tmp_path / "outside.txt").write_text("not clearsight's")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: clearsight\nVersion: {__version__}\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nTag: py3-none-any\n")
    (info / "RECORD").write_text(f"explain/api.py,,\n{row}\n{info.name}/METADATA,,\n{info.name}/WHEEL,,\n"
                                 f"{info.name}/RECORD,,\n", encoding="utf-8")
    with pytest.raises(DeployError, match=message):
        build_project_wheel(repo=site, cache=tmp_path / "cache")
