"""Warnings about one image: logged with the image's name, and kept for its summary in analysis.json."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["collect_image_warnings", "warn_about_image"]

# (image name, its warnings so far) while the runner explains that image in this thread
_CURRENT: ContextVar[tuple[str, list[str]] | None] = ContextVar("explain_image_warnings", default=None)


@contextmanager
def collect_image_warnings(image_name: str) -> Iterator[list[str]]:
    """Within the block, ``warn_about_image`` names ``image_name`` and appends to the list yielded."""
    warnings: list[str] = []
    token = _CURRENT.set((image_name, warnings))
    try:
        yield warnings
    finally:
        _CURRENT.reset(token)


def warn_about_image(logger: logging.Logger, message: str, location: str | None = None) -> None:
    """Log ``message`` as a warning, prefixed with the image being explained (when the runner says which),
    else with ``location`` when given (an image read outside a run's images, such as a baseline file)."""
    current = _CURRENT.get()
    if current is None:
        if location:
            logger.warning("%s: %s", location, message)
        else:
            logger.warning("%s", message)
        return
    image_name, warnings = current
    warnings.append(message)
    logger.warning("%s: %s", image_name, message)
