"""``python -m deploy``."""
from .cli import run

run()
