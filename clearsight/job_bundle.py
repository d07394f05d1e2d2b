"""What a Processing job installs, offline: this project's wheel and a wheelhouse of its pinned dependencies.

The job's container (AWS's PyTorch 2.3 CPU training image: CPython 3.11 on Ubuntu 20.04, glibc
2.31, x86_64) gets two uploads and installs them with ``pip install --no-index``: the project
wheel and a tar of the wheels of exactly JOB_PINS, downloaded for that platform and Python with
``pip download --only-binary``. The project wheel is the code that is running: from a source
checkout, ``pip wheel`` of it (as ``make wheel`` builds it); from a pip-installed clearsight, the
installed files its ``.dist-info/RECORD`` lists, zipped back into a wheel. Both are built once
and cached (the wheelhouse keyed by the pins, the wheel by the files) under ``build/job`` of a
checkout, else under ``~/.cache/clearsight/job`` (``$XDG_CACHE_HOME``; ``$CLEARSIGHT_JOB_CACHE``
overrides both): the first build needs PyPI, later ones nothing.

    python -m clearsight.job_bundle    # build (or find) both; print their paths and sha256
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

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
# .dist-info files the installer writes, not the wheel (PEP 376, 610, 627); RECORD is rewritten
_INSTALLER_FILES = frozenset({"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"})
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


def _is_checkout(repo: Path) -> bool:
    """True when ``repo`` holds the files ``pip wheel`` builds the project from (a source checkout)."""
    return all((repo / name).is_file() for name in _PROJECT_FILES)


def _cache_dir(cache: Path | None) -> Path:
    if cache or os.environ.get(CACHE_ENV):
        return Path(cache or os.environ[CACHE_ENV])
    if _is_checkout(REPO):
        return REPO / "build" / "job"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clearsight" / "job"


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
    files = [repo / name for name in _PROJECT_FILES]
    for package in _PACKAGES:
        files += sorted(path for path in (repo / package).rglob("*.py") if "__pycache__" not in path.parts)
    return files


def _installed_distribution(site: Path) -> tuple[str, str, list[tuple[str, Path]]]:
    """The clearsight distribution installed in folder ``site``: wheel file name, .dist-info name, files.

    The files are (name in the wheel, path) for every file its RECORD lists in the four packages
    and the .dist-info, without ``__pycache__`` and the files the installer wrote itself.
    """
    found = list(metadata.distributions(name="clearsight", path=[str(site)]))
    if not found:
        raise DeployError(
            f"build-wheel: the clearsight code in {site} is neither a source checkout (no {', '.join(_PROJECT_FILES)}) "
            "nor a pip-installed distribution (no clearsight-*.dist-info beside it): explain-job uploads the "
            "running code as a wheel; install clearsight with pip (pip install '.[aws]' in the clearsight "
            "checkout) or run it from a checkout (git clone, then make install)")
    distribution = found[0]
    # RECORD read here, not through ``distribution.files``: the importlib_metadata backport (which the SageMaker
    # SDK imports, and which then answers metadata.distributions too) leaves out the files that are missing,
    # so a deleted module went into the job's wheel unnoticed
    listed = [PurePosixPath(row[0]) for row in csv.reader(io.StringIO(distribution.read_text("RECORD") or "",
                                                                     newline="")) if row and row[0]]
    info_dir = next((path.parts[0] for path in listed if path.parts[0].endswith(".dist-info")), None)
    tags = [line.split(":", 1)[1].strip() for line in (distribution.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if info_dir is None or len(tags) != 1:
        raise DeployError(f"build-wheel: the clearsight distribution in {site} has no usable RECORD or WHEEL "
                          "file; reinstall it (pip install --force-reinstall with the wheel it came from, or '.[aws]' in a "
                          "clearsight checkout)")
    files = []
    for path in listed:
        top = path.parts[0]
        if top not in (*_PACKAGES, info_dir) or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if ".." in path.parts:  # pip never writes one; it would put a file from outside the install in the wheel
            raise DeployError(f"build-wheel: the RECORD of the installed clearsight in {site} lists {path}, outside "
                              "its packages; reinstall it (pip install --force-reinstall with the wheel it came from, "
                              "or '.[aws]' in a clearsight checkout)")
        if top == info_dir and path.name in _INSTALLER_FILES:
            continue
        located = Path(distribution.locate_file(path))
        if not located.is_file():
            raise DeployError(f"build-wheel: {located}, listed in the RECORD of the installed clearsight, is "
                              "missing; reinstall it (pip install --force-reinstall with the wheel it came from, or "
                              "'.[aws]' in a clearsight checkout)")
        files.append((path.as_posix(), located))
    # the packages first, the .dist-info after them: the order wheel builders use
    files.sort(key=lambda item: (item[0].startswith(info_dir + "/"), item[0]))
    wheel_name = f"clearsight-{distribution.version}-{tags[0]}.whl"
    return wheel_name, info_dir, files


def _zip_wheel(target: Path, info_dir: str, files: list[tuple[str, Path]]) -> None:
    """Write ``files`` ((name, path), in order) as a wheel with a new RECORD last; timestamps 1980-01-01."""
    rows = []

    def entry(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    with zipfile.ZipFile(target, "w") as wheel:
        for name, path in files:
            data = path.read_bytes()
            wheel.writestr(entry(name), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append((name, f"sha256={digest}", len(data)))
        rows.append((f"{info_dir}/RECORD", "", ""))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows(rows)
        wheel.writestr(entry(f"{info_dir}/RECORD"), record.getvalue())


def _wheel_of_installed(site: Path, cache: Path | None, progress: Progress) -> Path:
    """The installed clearsight in ``site`` zipped back into its wheel; cached by the files' sha256."""
    wheel_name, info_dir, files = _installed_distribution(site)
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    folder = _cache_dir(cache) / f"code-installed-{digest.hexdigest()[:16]}"
    wheel = folder / wheel_name
    if wheel.is_file():
        return wheel
    progress(f"zipping the installed clearsight in {site} into {wheel_name} for the job")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{wheel_name}.partial"
    _zip_wheel(partial, info_dir, files)
    os.replace(partial, wheel)
    return wheel


def build_project_wheel(repo: Path = REPO, cache: Path | None = None, progress: Progress = logger.info) -> Path:
    """This project's wheel: of the checkout ``repo`` or, when ``repo`` is site-packages, of the installed clearsight.

    From a checkout, ``pip wheel --no-deps`` builds it from a copy of the sources, cached by
    their sha256: the copy keeps stale build/ folders of the checkout out of the wheel;
    SOURCE_DATE_EPOCH makes its bytes depend on the sources only (with one setuptools version).
    From a pip install (no setup.cfg there), the files the distribution's RECORD lists are zipped
    back into a wheel with the same files, cached by their sha256. Raises DeployError when
    ``repo`` is neither.
    """
    if not _is_checkout(repo):
        return _wheel_of_installed(repo, cache, progress)
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
