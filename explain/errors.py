"""Exception hierarchy of the explain package."""

from __future__ import annotations

__all__ = ["ExplainError", "ConfigError", "UnknownSettingError", "PredictorError", "EndpointUnavailableError",
           "EndpointAccessError", "ImageListingError", "OutDirBusyError"]


class ExplainError(Exception):
    """Base class of every error raised by explain/."""


class ConfigError(ExplainError, ValueError):
    """An explanation setting is out of range; the message names the field, value and range.

    ``field`` is the setting's name as the settings objects and the CLI's parameters spell
    it (``num_samples``, ``max_payload_bytes``, ``shard``), or None when no single setting
    is to blame; the CLI reports the error against the option of that name.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownSettingError(ConfigError, TypeError):
    """A keyword that names no setting (a TypeError too, as Python's own for unexpected keywords)."""


class PredictorError(ExplainError):
    """The predictor failed or answered with something unusable (transports subclass this)."""


class EndpointUnavailableError(PredictorError):
    """An endpoint kept failing with retriable errors (no answer, throttling, 5xx); another may answer."""


class EndpointAccessError(PredictorError):
    """The endpoint cannot be called from here at all: no AWS credentials, credentials it refuses, no
    region, no such SageMaker endpoint. No image's fault: the run stops at the first one."""


class ImageListingError(ExplainError):
    """The images of an S3 prefix could not be listed for a reason other than the location given: no
    connection, no credentials, access refused, an unusable endpoint URL or region. (A bucket that does
    not exist is the location's fault: a plain ExplainError.)"""


class OutDirBusyError(ExplainError):
    """Another run is writing into the same --out (same manifest) right now."""
