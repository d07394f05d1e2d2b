"""The SageMaker MXNet 1.9 inference container's Python environment (3.8), built once for the tests.

``python -m tests.serving_py38`` (what ``make serving-py38`` runs) creates
``build/venvs/py38-serving`` with a Python 3.8 interpreter and the pins of
``requirements/serving-py38.txt``, and writes a stamp of the pins and the interpreter; the next
call reuses it while the stamp matches, and rebuilds it when the pins change. The tests call
:func:`serving_python` and skip only when no 3.8 interpreter exists at all.

The interpreter is looked for in this order: ``$SERVING_PY38_PYTHON``, ``python3.8`` on PATH,
pyenv's ``~/.pyenv/versions/3.8.*/bin/python3.8``.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements" / "serving-py38.txt"
VENV = REPO / "build" / "venvs" / "py38-serving"
STAMP_NAME = ".pins-sha256"
INTERPRETER_VARIABLE = "SERVING_PY38_PYTHON"


class EnvironmentBuildError(RuntimeError):
    """The 3.8 environment could not be built (pip failed, no network, a broken interpreter)."""


def _version_of(python: str) -> str | None:
    """``'3.8.18'`` for a working interpreter, None when it cannot be run."""
    try:
        completed = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                                   capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def find_python38() -> str | None:
    """A Python 3.8 interpreter on this machine, or None."""
    candidates = [os.environ.get(INTERPRETER_VARIABLE), shutil.which("python3.8")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(path) for path in sorted(pyenv_root.glob("versions/3.8.*/bin/python3.8"), reverse=True)]
    for candidate in candidates:
        if candidate and (_version_of(candidate) or "").startswith("3.8."):
            return candidate
    return None


def _stamp(python: str) -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(("\n" + (_version_of(python) or "?")).encode())
    return digest.hexdigest()


def serving_python(log=sys.stderr) -> Path | None:
    """The 3.8 environment's interpreter, built first if missing or stale; None without Python 3.8.

    Raises EnvironmentBuildError when a 3.8 interpreter exists but the environment cannot be built.
    """
    python38 = find_python38()
    if python38 is None:
        return None
    VENV.parent.mkdir(parents=True, exist_ok=True)
    python = VENV / "bin" / "python"
    wanted = _stamp(python38)
    with open(VENV.parent / (VENV.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (parallel test runs, make -j)
        stamp = VENV / STAMP_NAME
        if stamp.is_file() and stamp.read_text().strip() == wanted and python.exists():
            return python
        print(f"building {VENV.relative_to(REPO)} with {python38} from {REQUIREMENTS.relative_to(REPO)}",
              file=log, flush=True)
        shutil.rmtree(VENV, ignore_errors=True)
        steps = [[python38, "-m", "venv", str(VENV)],
                 [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
                  "-r", str(REQUIREMENTS)]]
        for command in steps:
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                shutil.rmtree(VENV, ignore_errors=True)
                raise EnvironmentBuildError(
                    "building the Python 3.8 serving environment failed (%s exited with %d):\n%s"
                    % (" ".join(command[:4]), completed.returncode, (completed.stdout + completed.stderr)[-3000:]))
        stamp.write_text(wanted + "\n")
    return python


def main() -> int:
    try:
        python = serving_python()
    except EnvironmentBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if python is None:
        print("no Python 3.8 interpreter found (set %s, or install 3.8, e.g. `pyenv install 3.8`): the tests "
              "that run serving/ on the container's Python will be skipped" % INTERPRETER_VARIABLE, file=sys.stderr)
        return 0
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
