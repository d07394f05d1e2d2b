"""clearsight: the front ends over serving/, deploy/ and explain/ (the ``clearsight`` command, jobs at scale).

The project's version is defined once, in ``serving`` (the bottom layer, so that every command's
--version can read it); it is re-exported here.
"""

from serving import __version__

__all__ = ["__version__"]
