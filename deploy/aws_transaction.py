"""Undo log for AWS calls that create things: each undo is registered before its call and removes only what this run provably made."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "tag_map",
    "Progress",
    "Transaction",
    "Undo",
    "TAG_TOOL",
    "TOOL",
    "TAG_RUN",
    "META_RUN",
    "META_TOOL",
    "abort_uploads_not_in",
    "created_by_run",
    "delete_object_if_uploaded_by_run",
    "pending_upload_ids",
    "delete_sagemaker_resource_of_run",
    "describe_or_none",
    "is_not_found",
]

logger = logging.getLogger(__name__)

TAG_TOOL, TOOL = "clearsight:tool", "clearsight"  # SageMaker tag / S3 object tag: made by this tool
TAG_RUN = "clearsight:run"  # SageMaker tag: the run that created the resource
META_TOOL = "clearsight-tool"  # S3 user metadata (x-amz-meta-clearsight-tool)
META_RUN = "clearsight-run"  # S3 user metadata: the run that uploaded the object

Progress = Callable[[str], None]  # takes one progress line for the user


def is_not_found(error: BaseException) -> bool:
    """True when ``error`` is AWS saying the resource does not exist (S3 404s, SageMaker's "Could not find")."""
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    if code in {"404", "NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFound",
                "ObjectNotFound", "ObjectNotFoundException"}:
        return True
    return code == "ValidationException" and ("Could not find" in message
                                              or "does not exist" in message)


@dataclass(frozen=True)
class Undo:
    """How to remove one thing a run is about to create.

    ``remove()`` deletes it if this run created it and returns True; it returns False when
    there is nothing of this run's to remove (never created, already gone, or created by
    someone else). ``manual`` is the command a person runs when ``remove`` could not.
    """

    description: str
    remove: Callable[[], bool]
    manual: str


class _InterruptGate:
    """While rolling back: the first Ctrl-C is noted and ignored, the next ones stop the roll-back."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.presses = 0
        self.stopped = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.presses += 1
        if self.presses == 1:
            self.say("Ctrl-C: still rolling back (deleting what this run created); press Ctrl-C "
                     "again to stop, and delete the rest yourself with the commands listed")
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[_InterruptGate]:
        """Route SIGINT here for the block (only possible on the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class Transaction:
    """The undo log of one run (``deploy sagemaker up``, an explain job's start, a merge).

    Call ``will_create`` BEFORE each AWS call that creates something, naming the resource
    by the name or key the run chose: if the call fails in any way (refused, response lost
    after the server acted, Ctrl-C), ``roll_back`` still finds it. Every resource the run
    creates carries ``run_id`` (SageMaker tag ``clearsight:run``, S3 metadata
    ``clearsight-run``); the undo functions delete only what carries it, so a resource of
    the same name that someone else made is never touched. ``commit`` forgets the log.
    """

    def __init__(self, progress: Progress | None = None, run_id: str | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self.progress = progress or (lambda message: None)
        self.undos: list[Undo] = []

    def will_create(self, description: str, remove: Callable[[], bool], manual: str) -> None:
        """Register the undo of a create call that is about to be made."""
        self.undos.append(Undo(description, remove, manual))

    def commit(self) -> None:
        """The run succeeded: keep everything it created."""
        self.undos.clear()

    def roll_back(self) -> tuple[str, ...]:
        """Undo everything registered, newest first; return what is left, each with its command.

        Survives Ctrl-C: the first press is ignored with a message; a second stops the
        roll-back, and every undo not done is returned with the command that does it.
        """
        gate = _InterruptGate(self.progress)
        leftovers: list[str] = []
        with gate.installed():
            for undo in reversed(self.undos):
                if gate.stopped:
                    leftovers.append(f"{undo.description} (roll-back stopped by Ctrl-C; "
                                     f"delete it with `{undo.manual}`)")
                    continue
                try:
                    if undo.remove():
                        self.progress(f"rolled back: {undo.description}")
                except KeyboardInterrupt:
                    gate.stopped = True
                    leftovers.append(f"{undo.description} (roll-back stopped by Ctrl-C; "
                                     f"delete it with `{undo.manual}`)")
                except Exception as error:  # noqa: BLE001 - go on with the rest, report this one
                    if is_not_found(error):
                        continue
                    logger.warning("could not roll back %s: %s", undo.description, error)
                    leftovers.append(f"{undo.description} ({_one_line(error)}; "
                                     f"delete it with `{undo.manual}`)")
        self.undos.clear()
        for line in leftovers:
            self.progress(f"NOT rolled back: {line}")
        return tuple(leftovers)


def _one_line(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        text = f"{response['Error'].get('Code', 'Error')}: {response['Error'].get('Message', '')}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())[:300]


def tag_map(sagemaker: Any, arn: str) -> dict[str, str]:
    """SageMaker resource ``arn``'s tags, key -> value (every page of ``list_tags``)."""
    tags = {}
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags.update({tag["Key"]: tag["Value"] for tag in page["Tags"]})
    return tags


def created_by_run(sagemaker: Any, arn: str, run_id: str) -> bool:
    """True if SageMaker resource ``arn`` carries this tool's tag and run ``run_id``'s tag."""
    tags = tag_map(sagemaker, arn)
    return tags.get(TAG_TOOL) == TOOL and tags.get(TAG_RUN) == run_id


def describe_or_none(describe: Callable[[], dict]) -> dict | None:
    """``describe()``, or None when AWS says the resource does not exist."""
    try:
        return describe()
    except Exception as error:
        if is_not_found(error):
            return None
        raise


def delete_sagemaker_resource_of_run(sagemaker: Any, run_id: str, describe: Callable[[], dict],
                                     arn_key: str, delete: Callable[[dict], None]) -> bool:
    """Delete a SageMaker resource if this run created it (tags prove it); False when there is none of ours."""
    described = describe_or_none(describe)
    if described is None:
        return False
    if not created_by_run(sagemaker, described[arn_key], run_id):
        logger.info("keeping %s: not created by run %s", described[arn_key], run_id)
        return False
    delete(described)
    return True


def pending_upload_ids(s3: Any, bucket: str, key: str) -> frozenset[str]:
    """The ids of the multipart uploads to exactly s3://bucket/key that are neither completed nor aborted."""
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
    return frozenset(upload["UploadId"] for upload in listed.get("Uploads", []) if upload["Key"] == key)


def abort_uploads_not_in(s3: Any, bucket: str, key: str, earlier_ids: frozenset[str]) -> int:
    """Abort the pending multipart uploads to s3://bucket/key that ``earlier_ids`` (listed before this
    run uploaded) does not hold; the number aborted.

    s3transfer aborts its own upload when a part fails, but not one whose CreateMultipartUpload
    answer was lost (each retry starts another) or that a Ctrl-C left behind: S3 keeps and bills
    their parts until they are aborted. The key holds the archive's digest, so only a run
    uploading the same archive under the same name at the same moment could own one of these.
    """
    aborted = 0
    for upload_id in pending_upload_ids(s3, bucket, key) - earlier_ids:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        aborted += 1
    return aborted


def delete_object_if_uploaded_by_run(s3: Any, bucket: str, key: str, run_id: str) -> bool:
    """Delete s3://bucket/key if its metadata says run ``run_id`` uploaded it."""
    head = describe_or_none(lambda: s3.head_object(Bucket=bucket, Key=key))
    if head is None:
        return False
    metadata = head.get("Metadata", {})
    if metadata.get(META_TOOL) != TOOL or metadata.get(META_RUN) != run_id:
        logger.info("keeping s3://%s/%s: not uploaded by run %s", bucket, key, run_id)
        return False
    s3.delete_object(Bucket=bucket, Key=key)
    return True
