"""setup.cfg's extras: each one that installs mxnet 1.9 also brings a numpy it imports with."""

import configparser

import pytest

from tests.conftest import REPO


def _extras() -> dict[str, list[str]]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "setup.cfg")
    section = config["options.extras_require"]
    return {name: [line.strip() for line in section[name].splitlines() if line.strip()] for name in section}


@pytest.mark.parametrize("extra", sorted(name for name, requirements in _extras().items()
                                         if any(line.startswith("mxnet") for line in requirements)))
def test_an_extra_with_mxnet_caps_numpy_below_1_24(extra):
    # review 19: pip install '.[zoo]' alone got numpy 1.26, and mxnet 1.9 failed to import
    # (np.bool was removed in numpy 1.24), so deploy package --zoo ended with a traceback
    assert "numpy<1.24" in _extras()[extra], f"[{extra}] installs mxnet 1.9 without numpy<1.24"
