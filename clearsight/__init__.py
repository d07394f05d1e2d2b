"""clearsight: the front ends over serving/, deploy/ and explain/ (the ``clearsight`` command, jobs at scale).

The package version is defined here once; setup.cfg reads it (``version = attr:``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
