"""Entry point of ``python -m explain``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m explain")
