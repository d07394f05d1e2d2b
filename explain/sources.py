"""Image sources of a run: local files, folders searched recursively, and s3://bucket/prefix listings."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ExplainError
from .manifest import sha256_bytes

__all__ = ["IMAGE_SUFFIXES", "ImageSource", "assign_stems", "collect_sources", "unique_stems", "ENDPOINT_URL_ENV"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ENDPOINT_URL_ENV = "CLEARSIGHT_AWS_ENDPOINT_URL"  # e.g. a moto server, as in deploy sagemaker


@dataclass(frozen=True)
class ImageSource:
    """One image: ``key`` identifies it (sharding, the manifest), ``location`` says where it is.

    key: a folder's image by its '/'-separated path relative to the folder, an S3 object by
    its key relative to the prefix, a file argument by the path as given. stem_hint: the
    output stem before de-duplication (relative path without suffix, '/' -> '__').
    etag: S3 objects only; picklable (the S3 client is made per process).
    """

    key: str
    location: str
    stem_hint: str
    etag: str | None = None
    endpoint_url: str | None = None

    def read(self) -> bytes:
        """The image file's bytes; raises ExplainError naming the location."""
        if self.location.startswith("s3://"):
            bucket, _, object_key = self.location[len("s3://"):].partition("/")
            try:
                return _s3_client(self.endpoint_url).get_object(Bucket=bucket, Key=object_key)["Body"].read()
            except Exception as error:  # botocore errors: name the object
                raise ExplainError(f"cannot read image {self.location!r}: {error}") from None
        try:
            return Path(self.location).read_bytes()
        except OSError as error:
            raise ExplainError(f"cannot read image {self.location!r}: {error}") from None

    def fingerprint(self, data: bytes | None = None) -> str:
        """What tells a changed image: sha256 of the bytes (local), the ETag (S3, no download)."""
        if self.etag is not None:
            return f"etag:{self.etag}"
        return "sha256:" + sha256_bytes(self.read() if data is None else data)


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint_url: str | None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None)


def _stem_hint(relative: str) -> str:
    path = PurePosixPath(relative)
    return str(path.with_suffix("")).replace("/", "__")


def _list_s3(url: str, endpoint_url: str | None) -> list[ImageSource]:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ExplainError(f"S3 location must look like s3://BUCKET/PREFIX, got {url!r}")
    client = _s3_client(endpoint_url)
    sources = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.lower().endswith(IMAGE_SUFFIXES):
                    continue
                relative = key[len(prefix):].lstrip("/") if prefix else key
                sources.append(ImageSource(relative, f"s3://{bucket}/{key}", _stem_hint(relative),
                                           etag=item.get("ETag", "").strip('"'), endpoint_url=endpoint_url))
    except Exception as error:  # botocore: no credentials, no bucket, no connection
        raise ExplainError(f"cannot list {url}: {error}") from None
    return sorted(sources, key=lambda source: source.key)


def collect_sources(arguments: list[str]) -> list[ImageSource]:
    """Image files, folders (searched recursively for jpg/jpeg/png) and s3://bucket/prefix URLs.

    S3 calls go to env CLEARSIGHT_AWS_ENDPOINT_URL when it is set. Raises ExplainError for a
    missing path or a folder/prefix without images.
    """
    endpoint_url = os.environ.get(ENDPOINT_URL_ENV) or None
    sources: list[ImageSource] = []
    for argument in arguments:
        argument = str(argument)
        if argument.startswith("s3://"):
            found = _list_s3(argument, endpoint_url)
            if not found:
                raise ExplainError(f"no {'/'.join(IMAGE_SUFFIXES)} objects under {argument!r}")
            sources.extend(found)
            continue
        path = Path(argument)
        if path.is_dir():
            found = sorted(item for item in path.rglob("*")
                           if item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ExplainError(f"no {'/'.join(IMAGE_SUFFIXES)} files in directory {argument!r}")
            for item in found:
                relative = item.relative_to(path).as_posix()
                sources.append(ImageSource(relative, str(item), _stem_hint(relative)))
        elif path.exists():
            sources.append(ImageSource(path.as_posix(), str(path), path.stem))
        else:
            raise ExplainError(f"Path {argument!r} does not exist.")
    unique: dict[str, ImageSource] = {}
    for source in sources:  # the same image named twice is explained once
        unique.setdefault(source.key, source)
    return list(unique.values())


def unique_stems(stems: list[str]) -> list[str]:
    """Make output stems unique over the whole list: a repeated stem gets _2, _3, ... in list order."""
    unique, seen = [], {}
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return unique


def assign_stems(sources: list[ImageSource]) -> list[str]:
    """Output stems of the sources, unique over the whole list (see unique_stems)."""
    return unique_stems([source.stem_hint for source in sources])
