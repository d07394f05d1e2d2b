"""``python -m clearsight``: the ``clearsight`` command from a source checkout."""

from .cli import run

if __name__ == "__main__":
    run()
