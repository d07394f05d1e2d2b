"""Exception hierarchy of the explain package."""

from __future__ import annotations

__all__ = ["ExplainError", "ConfigError", "PredictorError", "EndpointUnavailableError"]


class ExplainError(Exception):
    """Base class of every error raised by explain/."""


class ConfigError(ExplainError, ValueError):
    """An explanation setting is out of range; the message names the field, value and range."""


class PredictorError(ExplainError):
    """The predictor failed or answered with something unusable (transports subclass this)."""


class EndpointUnavailableError(PredictorError):
    """An endpoint kept failing with retriable errors (no answer, throttling, 5xx); another may answer."""
