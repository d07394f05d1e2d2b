"""Errors the handler raises: each carries the HTTP status the client should see."""


class ServingError(Exception):
    """Base of every error this package raises on purpose."""

    status = 500

    def __init__(self, message, status=None):
        super(ServingError, self).__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class ModelSpecError(ServingError):
    """``model.json`` is missing or invalid (a packaging mistake, not a client one)."""

    status = 500


class BadRequestError(ServingError):
    """The request body cannot be used: wrong shape, dtype, values or encoding."""

    status = 400


class PayloadTooLargeError(ServingError):
    """The body or the decoded image exceeds a configured limit."""

    status = 413


class UnsupportedMediaTypeError(ServingError):
    """Content-Type (or Accept) names a format the handler does not speak."""

    status = 415


class NotAcceptableError(ServingError):
    """Accept names no format the handler can produce."""

    status = 406
