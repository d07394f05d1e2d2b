"""In-process connection: ``serving.handler``'s model_fn/transform_fn in this process, no HTTP.

Takes the endpoint's own code path (the transport's request and response encodings and custom
attributes; npy by default): the answers equal those of a local or SageMaker endpoint serving the
same model. The network settings (IN_PROCESS_NOT_APPLIED) do not apply. Needs mxnet (the ``serve``
extra).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from serving.archive import ArchiveError, extract_tar_gz
from serving.contract import MAX_IMAGES_PER_REQUEST, MMS_MAX_REQUEST_BYTES, NPY

from ..errors import ConfigError, PredictorError
from ..owners import left_by_a_dead_process, owned_prefix
from .engine import Predictor
from .planning import check_task
from .transport import TransportConfig

__all__ = ["IN_PROCESS_NOT_APPLIED", "InProcessConnection", "InProcessPredictor", "in_process_not_applied",
           "is_model_path"]

logger = logging.getLogger(__name__)

# Transport settings a model run in this process has no use for, with the reason.
IN_PROCESS_NOT_APPLIED = {
    "target_model": "in-process model: it is the one model; there is no multi-model endpoint to address",
    "concurrency": "in-process model: one forward pass at a time",
    "timeout": "in-process model: no network call to wait for",
    "max_retries": "in-process model: no network call to retry",
}


def in_process_not_applied(transport: TransportConfig) -> dict[str, str]:
    """The IN_PROCESS_NOT_APPLIED settings ``transport`` sets to other than their defaults, with the reason."""
    defaults = TransportConfig()
    return {name: reason for name, reason in IN_PROCESS_NOT_APPLIED.items()
            if getattr(transport, name) != getattr(defaults, name)}


def is_model_path(path: Path) -> bool:
    """Whether ``path`` names a model this connection can load: a folder or a ``.tar.gz`` file."""
    return path.is_dir() or (path.is_file() and path.name.endswith(".tar.gz"))


def serve_extra_hint(python_version: tuple[int, ...]) -> str:
    """What to do without mxnet on ``python_version`` (sys.version_info or a tuple), for a message's parentheses.

    mxnet 1.9 (the ``serve`` extra, with numpy < 1.24) installs on Python 3.10 and 3.11 only: on
    3.12 and later ``pip install 'clearsight[serve]'`` fails building numpy, so it is not offered there.
    """
    major, minor = python_version[:2]
    if (major, minor) < (3, 12):
        return ("pip install 'clearsight[serve]' adds mxnet, '.[serve]' in a clearsight checkout; "
                "or explain against an endpoint serving it")
    return (f"mxnet, which the [serve] extra adds, installs on Python 3.10 or 3.11, not on this Python {major}.{minor}: "
            "explain against an endpoint serving the model (deploy serve in a venv of one of those, or deploy "
            "sagemaker), or run this in such a venv")


def _message(error: Exception, with_status: bool = True) -> str:
    """The user-facing message of an exception (ServingError carries ``.message`` and ``.status``).

    with_status: prefix the status an endpoint would answer with ("HTTP 413: ..."), so a refused
    batch reads the same in process as over HTTP; False where no request is involved (loading)."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    status = getattr(error, "status", None)
    return f"HTTP {status}: {message}" if with_status and isinstance(status, int) else message


class InProcessConnection:
    """A model loaded with ``serving.handler.model_fn``; ``send`` runs ``transform_fn`` on one body.

    model_path: an exported model folder (weights + model.json) or a model.tar.gz, which is
    extracted to a temporary folder that ``close()`` removes. content_type / accept: the request
    and response encodings ``transform_fn`` gets, as over HTTP. custom_attributes: what an
    endpoint reads from X-Amzn-SageMaker-Custom-Attributes (``score_threshold=0.5,top_k=10``),
    applied to every request; None: detection models answer every score (score_threshold 0), as
    remote endpoints do when asked with ``score_threshold=0``.
    """

    name = "in-process"

    def __init__(self, model_path: str | Path, content_type: str = NPY, accept: str = NPY,
                 custom_attributes: str | None = None) -> None:
        path = Path(model_path)
        self.source = str(path)
        self.content_type, self.accept, self.custom_attributes = content_type, accept, custom_attributes
        self._extracted: tempfile.TemporaryDirectory | None = None
        self._forward_lock = threading.Lock()  # one forward pass at a time (Gluon blocks are not thread-safe)
        try:
            self._load(path)
        except BaseException:  # a bad archive, Ctrl-C or SIGTERM while loading: no extracted copy stays behind
            self.close()
            raise

    def _load(self, path: Path) -> None:
        """Extract ``path`` when it is an archive, then load the model with the handler's model_fn."""
        if path.is_file():
            remove_models_of_killed_runs()
            self._extracted = tempfile.TemporaryDirectory(prefix=owned_prefix(EXTRACTED_PREFIX))
            try:
                extract_tar_gz(path, self._extracted.name)
            except ArchiveError as error:
                message = error.message  # a full sentence when the disk is full ("cannot extract ... into ...")
                raise PredictorError(message if message.startswith("cannot extract ")
                                     else f"cannot extract {path}: {message}") from None
            path = Path(self._extracted.name)
        self.model_dir = path
        try:
            # mxnet is heavy and only the in-process transport needs it: imported here, not at the top
            from serving.handler import model_fn, transform_fn
        except ImportError as error:
            raise PredictorError(f"cannot import serving.handler to run the model in process: {error} "
                                 f"({serve_extra_hint(sys.version_info)})") from None
        self._transform_fn = transform_fn
        try:
            self.model = model_fn(str(self.model_dir))
        except Exception as error:  # the handler's own errors carry a message meant for users
            raise PredictorError(f"cannot load the model from {self.source}: "
                                 f"{_message(error, with_status=False)}") from None
        limits = getattr(self.model, "limits", None)
        if limits is None:
            return
        if self.custom_attributes is not None:  # what the handler reads from the header, for every request
            from serving.errors import ServingError
            from serving.settings import parse_custom_attributes
            defaults = self.model.default_options()
            try:
                options = parse_custom_attributes(self.custom_attributes, defaults.score_threshold, defaults.top_k)
            except ServingError as error:
                raise ConfigError(f"custom_attributes {self.custom_attributes!r}: {error.message}",
                                  field="custom_attributes") from None
            limits.score_threshold, limits.top_k = options.score_threshold, options.top_k
        elif getattr(self.model.spec, "task", None) == "detection":
            # Same as DETECTION_CUSTOM_ATTRIBUTES over HTTP: every detection score counts.
            limits.score_threshold = 0.0

    @property
    def description(self) -> str:
        return f"model {self.source}"

    @property
    def endpoint_id(self) -> str:
        return self.source

    @property
    def class_names(self) -> list[str] | None:
        """Class names from the model's model.json, when the handler exposes them."""
        classes = getattr(getattr(self.model, "spec", None), "classes", None)
        return list(classes) if classes else None

    @property
    def max_body_bytes(self) -> int:
        """The request body limit the handler enforces (env SERVING_MAX_BODY_BYTES, else MMS's)."""
        limits = getattr(self.model, "limits", None)
        return max(1024, int(getattr(limits, "max_body_bytes", MMS_MAX_REQUEST_BYTES)))

    def send(self, body: bytes) -> tuple[bytes, str]:
        """transform_fn on one body; PredictorError (no retry) with the handler's message."""
        try:
            with self._forward_lock:
                return self._transform_fn(self.model, body, self.content_type, self.accept)
        except Exception as error:  # serving errors name the problem; keep their message
            raise PredictorError(f"{self.description} failed on a batch: {_message(error)}") from None

    def close(self) -> None:
        """Remove the temporary folder a model.tar.gz was extracted to, if any."""
        if self._extracted is not None:
            self._extracted.cleanup()
            self._extracted = None


EXTRACTED_PREFIX = "clearsight-model-"  # + <pid>@<host>-: a model.tar.gz extracted to the temporary folder


def remove_models_of_killed_runs() -> list[str]:
    """Delete the extracted models that runs on this host killed outright (SIGKILL, the out-of-memory
    killer: no cleanup ran) left in the temporary folder; a YOLOv3 is about 240 MB each. Returns their paths."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(EXTRACTED_PREFIX + "*@*"):
        if folder.is_dir() and not folder.is_symlink() and left_by_a_dead_process(folder.name, EXTRACTED_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    if removed:
        logger.info("removed %d extracted model(s) left by killed runs: %s", len(removed), ", ".join(removed))
    return removed


class InProcessPredictor(Predictor):
    """predict(batch) through ``serving.handler`` in this process, at most ``batch_size`` images per call.

    model_path: a model folder or a model.tar.gz. ``task`` (optional) checks the shape of the
    model's answers. Chunks hold at most ``batch_size`` images and what the handler's limits
    admit (body bytes, images and network-input pixels per request), as over HTTP; one forward
    pass runs at a time. ``transport`` (default: npy both ways): its content_type, accept,
    custom_attributes, probability, max_images_per_request and max_payload_bytes (at most the
    handler's) apply as over HTTP; the rest (IN_PROCESS_NOT_APPLIED) does not, and ``settings()`` lists the ones it sets
    under ``settings_not_applied``.
    """

    def __init__(self, model_path: str | Path, task: str | None = None, batch_size: int = MAX_IMAGES_PER_REQUEST,
                 transport: TransportConfig | None = None) -> None:
        check_task(task, allow_none=True)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}", field="batch_size")
        given = transport or TransportConfig(content_type=NPY, accept=NPY)
        self.not_applied = in_process_not_applied(given)
        connection = InProcessConnection(model_path, given.content_type, given.accept, given.custom_attributes)
        served = getattr(getattr(connection.model, "spec", None), "task", None)
        if task is not None and served is not None and served != task:  # else every image fails at its first call
            connection.close()
            raise ConfigError(f"model {model_path} is a {served} model (its model.json), but it is asked for "
                              f"{task} (--task, or task= from Python, whose default is detection): give task {served}",
                              field="task")
        transport = TransportConfig(content_type=given.content_type, accept=given.accept,
                                    max_payload_bytes=min(given.max_payload_bytes, connection.max_body_bytes),
                                    concurrency=1, max_retries=0, custom_attributes=given.custom_attributes,
                                    probability=given.probability,
                                    # the user's cap holds here too (it was dropped: 64-image requests)
                                    max_images_per_request=given.max_images_per_request)
        super().__init__(connection, task, transport, max_images_per_request=batch_size)
        self.batch_size = batch_size

    @property
    def model(self):
        """The handler's loaded model (``serving.handler.ServedModel``)."""
        return self.connection.model

    def images_per_request(self, image_shape: tuple[int, int, int]) -> int:
        """The byte budget's count and ``batch_size``, at most what the handler's request limits admit."""
        admitted = self.model.images_per_request(int(image_shape[0]), int(image_shape[1]))
        return max(1, min(super().images_per_request(image_shape), admitted))

    def settings(self) -> dict:
        settings = {**super().settings(), "batch_size": self.batch_size}
        if self.not_applied:
            settings["settings_not_applied"] = dict(self.not_applied)
        return settings
