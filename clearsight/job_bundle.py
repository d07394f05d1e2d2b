"""What a Processing job installs, offline: this project's wheel and a wheelhouse of its pinned dependencies.

The job's container (AWS's PyTorch 2.3 CPU training image: CPython 3.11 on Ubuntu 20.04, glibc
2.31, x86_64) gets two uploads and installs them with ``pip install --no-index``: the project
wheel (``pip wheel`` of the checkout, as ``make wheel`` builds it) and a tar of the wheels of
exactly JOB_PINS, downloaded for that platform and Python with ``pip download --only-binary``.
Both are built once and cached under ``build/job`` (the wheelhouse keyed by the pins, the
wheel by the sources): the first build needs PyPI, later ones nothing.

    python -m clearsight.job_bundle    # build (or find) both; print their paths and sha256
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.aws_clients import file_sha256
from deploy.errors import DeployError
from serving.archive import write_tar

from . import __version__

__all__ = ["JOB_PINS", "JOB_PLATFORMS", "JOB_PYTHON", "JobUploads", "WHEELHOUSE_NAME", "build_job_uploads",
           "build_project_wheel", "build_wheelhouse", "main"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "CLEARSIGHT_JOB_CACHE"
# The job image's Python and platforms: glibc 2.31 runs manylinux2014 (glibc 2.17) and
# manylinux_2_28 wheels; Pillow 13 ships only the latter.
JOB_PYTHON = "3.11"
JOB_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
# The worker's dependencies: the explain-only install (setup.cfg install_requires, boto3 included)
# and everything it pulls in, at the versions of constraints.txt (the tested Python 3.11 set);
# tests/clearsight/test_job_bundle.py keeps the two equal.
JOB_PINS = (
    "boto3==1.44.8", "botocore==1.44.8", "certifi==2026.10.19.post1", "charset-normalizer==3.5.3",
    "click==8.5.1", "contourpy==1.3.2", "cycler==0.12.1", "fonttools==4.68.0", "idna==3.20",
    "imageio==2.38.1", "jmespath==1.1.0", "kiwisolver==1.5.1", "lazy-loader==0.6", "matplotlib==3.8.4",
    "networkx==3.6.1", "numpy==1.23.5", "packaging==26.4", "pillow==13.0.0", "pyparsing==3.3.3",
    "python-dateutil==2.9.0.post0", "requests==2.34.2", "s3transfer==0.19.3", "scikit-image==0.22.0",
    "scipy==1.11.4", "six==1.17.0", "tifffile==2026.3.3", "tqdm==4.70.1", "urllib3==2.8.0",
)
WHEELHOUSE_NAME = "clearsight-wheelhouse.tar"
CONSTRAINTS_NAME = "constraints.txt"  # inside the wheelhouse: JOB_PINS, one per line
_PROJECT_FILES = ("setup.cfg", "pyproject.toml", "README.md")
_PACKAGES = ("serving", "deploy", "explain", "clearsight")
_EPOCH = "315532800"  # 1980-01-01: zip timestamps of a reproducible wheel (SOURCE_DATE_EPOCH)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class JobUploads:
    """The two files a job installs from, and the sha256 the job's entry point checks them against.

    code: this project's wheel (``clearsight-<version>-py3-none-any.whl``). wheelhouse: a tar of
    the dependency wheels and constraints.txt (JOB_PINS).
    """

    code: Path
    code_sha256: str
    wheelhouse: Path
    wheelhouse_sha256: str


def _cache_dir(cache: Path | None) -> Path:
    return Path(cache or os.environ.get(CACHE_ENV) or REPO / "build" / "job")


def _run_pip(args: list[str], step: str) -> None:
    """``python -m pip ARGS`` quietly; DeployError with pip's last lines when it fails."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "SOURCE_DATE_EPOCH": _EPOCH})
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise DeployError(f"{step}: pip exited {result.returncode}: {tail}; the first build needs PyPI "
                          "(it is cached afterwards)")


def _project_sources(repo: Path) -> list[Path]:
    """The files ``pip wheel`` builds the project from (what ``make wheel`` reads)."""
    if not all((repo / name).is_file() for name in _PROJECT_FILES):
        raise DeployError(f"build-wheel: {repo} is not a clearsight source checkout (no setup.cfg and "
                          "pyproject.toml): explain-job uploads the project as a wheel built from a checkout; "
                          "run it from one (git clone, then make install)")
    files = [repo / name for name in _PROJECT_FILES]
    for package in _PACKAGES:
        files += sorted(path for path in (repo / package).rglob("*.py") if "__pycache__" not in path.parts)
    return files


def build_project_wheel(repo: Path = REPO, cache: Path | None = None, progress: Progress = logger.info) -> Path:
    """This project's wheel, built by ``pip wheel --no-deps`` from a copy of the sources; cached by their sha256.

    The copy keeps stale build/ folders of the checkout out of the wheel; SOURCE_DATE_EPOCH
    makes its bytes depend on the sources only (with one setuptools version).
    """
    sources = _project_sources(repo)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    folder = _cache_dir(cache) / f"code-{digest.hexdigest()[:16]}"
    wheel = folder / f"clearsight-{__version__}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    progress(f"building the project wheel ({wheel.name}) for the job")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clearsight-wheel-") as scratch:
        source = Path(scratch) / "src"
        for path in sources:
            target = source / path.relative_to(repo)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        _run_pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(Path(scratch) / "dist"), str(source)],
                 "build-wheel")
        built = Path(scratch) / "dist" / wheel.name
        if not built.is_file():
            raise DeployError(f"build-wheel: pip wheel did not write {wheel.name}")
        partial = folder / f".{wheel.name}.partial"
        shutil.copyfile(built, partial)
        os.replace(partial, wheel)
    return wheel


def _wheel_identity(name: str) -> tuple[str, str]:
    """``scikit_image-0.22.0-cp311-...whl`` -> ('scikit-image', '0.22.0'), names normalised as PEP 503 does."""
    project, version = name.split("-")[:2]
    return project.lower().replace("_", "-").replace(".", "-"), version


def build_wheelhouse(cache: Path | None = None, progress: Progress = logger.info) -> Path:
    """The tar of JOB_PINS' wheels for CPython JOB_PYTHON on JOB_PLATFORMS, and constraints.txt; cached by the pins."""
    key = hashlib.sha256(json.dumps([JOB_PYTHON, JOB_PLATFORMS, JOB_PINS]).encode()).hexdigest()[:16]
    folder = _cache_dir(cache) / f"wheelhouse-{key}"
    tar = folder / WHEELHOUSE_NAME
    if tar.is_file():
        return tar
    progress(f"downloading the job's wheelhouse ({len(JOB_PINS)} wheels for CPython {JOB_PYTHON}, "
             f"{JOB_PLATFORMS[-1]}; about 110 MB, once) into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as scratch:
        wheels = Path(scratch)
        (wheels / CONSTRAINTS_NAME).write_text("\n".join(JOB_PINS) + "\n")
        platforms = [item for platform in JOB_PLATFORMS for item in ("--platform", platform)]
        _run_pip(["download", "--no-deps", "--only-binary=:all:", *platforms, "--python-version", JOB_PYTHON,
                  "--implementation", "cp", "--abi", "cp" + JOB_PYTHON.replace(".", ""), "--quiet",
                  "--dest", str(wheels), "-r", str(wheels / CONSTRAINTS_NAME)], "build-wheelhouse")
        names = sorted(path.name for path in wheels.glob("*.whl"))
        found = sorted(_wheel_identity(name) for name in names)
        wanted = sorted(tuple(pin.lower().split("==")) for pin in JOB_PINS)
        if found != wanted:
            raise DeployError(f"build-wheelhouse: pip downloaded {found}, expected exactly {wanted}")
        partial = folder / f".{WHEELHOUSE_NAME}.partial"
        write_tar(partial, wheels, [*names, CONSTRAINTS_NAME])
        os.replace(partial, tar)
    return tar


def build_job_uploads(repo: Path = REPO, cache: Path | None = None, progress: Progress = logger.info) -> JobUploads:
    """The project wheel and the wheelhouse (built or found in the cache) with their sha256."""
    code = build_project_wheel(repo, cache, progress)
    wheelhouse = build_wheelhouse(cache, progress)
    return JobUploads(code, file_sha256(code), wheelhouse, file_sha256(wheelhouse))


def main() -> None:
    """Build (or find) the job's uploads and print them: ``make job-bundle``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        uploads = build_job_uploads()
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    for path, digest in ((uploads.code, uploads.code_sha256), (uploads.wheelhouse, uploads.wheelhouse_sha256)):
        print(f"{path} {path.stat().st_size / 1e6:.1f} MB sha256 {digest}")


if __name__ == "__main__":
    main()
