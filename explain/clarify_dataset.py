"""A Clarify ``dataset_uri`` -> image sources: an S3 prefix, a local folder or image, or a manifest file.

A manifest is recognised by its name (``.manifest``, ``.json`` or ``.jsonl``), local or on S3,
in either of the two formats SageMaker uses for lists of objects (Clarify's documentation says
only "a manifest file"):

- SageMaker's ``ManifestFile`` (S3DataType ``ManifestFile``): a JSON array whose first item is
  ``{"prefix": "s3://bucket/photos/"}`` and whose other items are keys relative to it::

      [{"prefix": "s3://bucket/photos/"}, "cats/1.jpg", "dogs/2.png"]

- an augmented manifest (JSON Lines, as Ground Truth writes): one object per line whose
  ``source-ref`` is the image's URI::

      {"source-ref": "s3://bucket/photos/cats/1.jpg", "label": 3}

A local prefix or ``source-ref`` may be a path, relative to the manifest's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .errors import ExplainError
from .sources import ENDPOINT_URL_ENV, ImageSource, collect_sources, unique_sources

__all__ = ["MANIFEST_SUFFIXES", "dataset_sources", "is_manifest", "parse_manifest"]

MANIFEST_SUFFIXES = (".manifest", ".json", ".jsonl")


def is_manifest(uri: str) -> bool:
    """Whether ``uri`` names a manifest file (by its suffix) rather than images or a folder/prefix."""
    return PurePosixPath(uri.rstrip("/")).suffix.lower() in MANIFEST_SUFFIXES


def _read(uri: str) -> str:
    """The manifest's text, from S3 or a local file; ExplainError naming the location."""
    try:
        if uri.startswith("s3://"):
            import boto3

            bucket, _, key = uri[len("s3://"):].partition("/")
            client = boto3.client("s3", endpoint_url=os.environ.get(ENDPOINT_URL_ENV) or None)
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        else:
            data = Path(uri).read_bytes()
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ExplainError(f"manifest {uri!r} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except Exception as error:  # OSError, botocore errors: name the manifest
        raise ExplainError(f"cannot read manifest {uri!r}: {error}") from None


def _join(prefix: str, relative: str, base_dir: str) -> str:
    """The location of ``relative`` under ``prefix`` (an s3:// prefix or a folder, relative to ``base_dir``)."""
    if prefix.startswith("s3://"):
        return prefix if not relative else prefix.rstrip("/") + "/" + relative.lstrip("/")
    folder = Path(prefix) if Path(prefix).is_absolute() else Path(base_dir) / prefix
    return str(folder / relative)


def parse_manifest(text: str, uri: str) -> list[tuple[str, str]]:
    """A manifest's images as (key, location) pairs, in manifest order (see the module docstring).

    key: the image's path relative to the prefix (ManifestFile) or its URI's path (augmented
    manifest); location: an s3:// URI or a local path. Raises ExplainError naming the first
    unusable entry.
    """
    base_dir = "" if uri.startswith("s3://") else str(Path(uri).parent)
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except (ValueError, RecursionError) as error:
            raise ExplainError(f"manifest {uri!r} is not valid JSON: {error}") from None
        if not items or not isinstance(items[0], dict) or not isinstance(items[0].get("prefix"), str):
            raise ExplainError(f"manifest {uri!r}: the first item must be {{\"prefix\": \"s3://bucket/prefix/\"}}, "
                               f"got {json.dumps(items[0]) if items else 'an empty list'}")
        prefix = items[0]["prefix"]
        pairs = []
        for index, relative in enumerate(items[1:], start=1):
            if not isinstance(relative, str) or not relative.strip("/"):
                raise ExplainError(f"manifest {uri!r}: item {index} must be a key relative to the prefix, "
                                   f"got {relative!r}")
            pairs.append((relative.lstrip("/"), _join(prefix, relative, base_dir)))
        return pairs
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise ExplainError(f"manifest {uri!r} line {number} is not JSON: {error}") from None
        source = record.get("source-ref") if isinstance(record, dict) else None
        if not isinstance(source, str) or not source:
            raise ExplainError(f"manifest {uri!r} line {number} has no \"source-ref\" naming an image; a manifest "
                               "is a JSON array [{\"prefix\": ...}, keys...] or JSON Lines with \"source-ref\"")
        if source.startswith("s3://"):
            pairs.append((source[len("s3://"):].partition("/")[2], source))
        else:
            pairs.append((source, _join("", source, base_dir)))
    return pairs


def dataset_sources(dataset_uri: str, output_mark: Callable[[str], bool] | None = None) -> list[ImageSource]:
    """The images a Clarify ``dataset_uri`` names: an S3 prefix, a local folder or image, or a manifest.

    ``output_mark``: as ``collect_sources``'s, so that a folder's earlier clearsight outputs are left out.
    Raises ExplainError for a location without images, an unreadable or malformed manifest.
    """
    if not is_manifest(dataset_uri):
        return collect_sources([dataset_uri], output_mark=output_mark)
    pairs = parse_manifest(_read(dataset_uri), dataset_uri)
    if not pairs:
        raise ExplainError(f"manifest {dataset_uri!r} lists no images")
    endpoint_url = os.environ.get(ENDPOINT_URL_ENV) or None
    return unique_sources([ImageSource(key, location, endpoint_url=endpoint_url if location.startswith("s3://")
                                       else None) for key, location in pairs])
