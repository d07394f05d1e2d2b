"""Image sources of a run: local files, folders searched recursively, s3:// prefixes and objects; output stems."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ExplainError, ImageListingError

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_FILE_BYTES", "MAX_STEM_BYTES", "ImageSource", "OversizedImageError",
           "collect_sources", "unique_sources", "output_stem", "ENDPOINT_URL_ENV", "read_s3_object"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The largest image file read (its size from the file system or the S3 object's Content-Length, before
# any byte is read): a 40-megapixel image (images.MAX_IMAGE_PIXELS) is at most ~120 MB as 8-bit RGB PNG;
# a file of gigabytes named .jpg would otherwise be read whole into memory before its header was seen.
MAX_IMAGE_FILE_BYTES = 256 * 2**20
# Deprecated (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, which boto3 reads itself): still honoured.
ENDPOINT_URL_ENV = "CLEARSIGHT_AWS_ENDPOINT_URL"
# Longest output stem in UTF-8 bytes: the longest output name, shap_<stem>_box1000_object.jpeg,
# then stays far below the 255 bytes file systems allow per name.
MAX_STEM_BYTES = 120
_HASH_CHARS = 12  # hex digits of sha256(key) that make a shortened or ambiguous stem unique
_HASHED_TAIL = re.compile(r"-[0-9a-f]{%d}" % _HASH_CHARS)  # how a shortened stem ends
# A path component that can appear in a stem as it is starts with a letter, a digit or "_".
_PLAIN_COMPONENT = re.compile(r"\w.*", re.UNICODE)


class OversizedImageError(ExplainError):
    """An image file larger than MAX_IMAGE_FILE_BYTES: refused before it is read (the image's fault)."""


@dataclass(frozen=True)
class ImageSource:
    """One image: ``key`` identifies it (sharding, the manifest, the output stem), ``location`` says where it is.

    key: a folder's image by its '/'-separated path relative to the folder, an S3 object under
    a prefix by its key relative to the prefix, a file argument or a single S3 object by its
    file name. etag: S3 objects only; picklable (the S3 client is made per process).
    """

    key: str
    location: str
    etag: str | None = None
    endpoint_url: str | None = None

    @property
    def stem(self) -> str:
        """The output stem of this image: ``output_stem(key)``."""
        return output_stem(self.key)

    def read(self) -> bytes:
        """The image file's bytes; raises ExplainError naming the location, OversizedImageError (before
        reading any byte) for a file of more than MAX_IMAGE_FILE_BYTES."""
        if self.location.startswith("s3://"):
            bucket, _, object_key = self.location[len("s3://"):].partition("/")
            try:
                response = _s3_client(self.endpoint_url).get_object(Bucket=bucket, Key=object_key)
                try:
                    self._check_size(response.get("ContentLength", 0))
                    return response["Body"].read()
                finally:
                    response["Body"].close()
            except OversizedImageError:
                raise
            except Exception as error:  # botocore errors: name the object
                raise ExplainError(f"cannot read image {self.location!r}: {error}") from None
        try:
            with open(self.location, "rb") as stream:
                self._check_size(os.fstat(stream.fileno()).st_size)
                return stream.read()
        except OSError as error:
            raise ExplainError(f"cannot read image {self.location!r}: {error.strerror or error}") from None

    def _check_size(self, size: int) -> None:
        if size > MAX_IMAGE_FILE_BYTES:
            raise OversizedImageError(f"cannot read image {self.location!r}: a file of {size:,} bytes, more than "
                                      f"the {MAX_IMAGE_FILE_BYTES:,} explain reads (an image of 40,000,000 "
                                      "pixels needs less); downscale it first")

    def fingerprint(self, data: bytes | None = None) -> str:
        """What tells a changed image: sha256 of the bytes (local), the ETag (S3, no download)."""
        if self.etag is not None:
            return f"etag:{self.etag}"
        return "sha256:" + hashlib.sha256(self.read() if data is None else data).hexdigest()


def output_stem(key: str) -> str:
    """The output stem of image ``key``: a function of the key alone, different for different keys.

    Every process (shards, --workers, the hosts of a Processing job, a resumed run) names an
    image's outputs the same way without knowing the other images. Readable where that is
    unambiguous, as Clarify names them: the key without a lowercase ``.jpg`` suffix, other
    image suffixes kept (``cat.jpg`` -> ``cat``, ``cat.png`` -> ``cat.png``, ``cat.JPG`` ->
    ``cat.JPG``), ``/`` written as ``__`` (``a/b/cat.jpg`` -> ``a__b__cat``). A key that could
    read like another key's stem (``__`` or control characters in it, a component that starts
    with ``.``, another suffix) or whose stem would exceed MAX_STEM_BYTES UTF-8 bytes becomes
    a shortened readable part and ``-`` + the first 12 hex digits of sha256(key).
    """
    name = key.rsplit("/", 1)[-1]
    suffix = PurePosixPath(name).suffix if name else ""
    base = key[: len(key) - len(suffix)]
    readable = base.replace("/", "__") + ("" if suffix == ".jpg" else suffix)
    components = base.split("/")
    plain = (
        suffix.lower() in IMAGE_SUFFIXES
        and readable.isprintable()
        and all(_PLAIN_COMPONENT.fullmatch(component) for component in components)
        and "__" not in base
        and (len(components) == 1 or not any(c.startswith("_") or c.endswith("_") for c in components))
        and not base.lower().endswith(IMAGE_SUFFIXES)
        and not _HASHED_TAIL.fullmatch(readable[-_HASH_CHARS - 1:])
        and len(readable.encode("utf-8")) <= MAX_STEM_BYTES
    )
    if plain:
        return readable
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:_HASH_CHARS]
    printable = "".join(char if char.isprintable() else "_" for char in readable).lstrip(".-_")
    budget = MAX_STEM_BYTES - _HASH_CHARS - 1
    shortened = printable.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip("_")
    return f"{shortened or 'image'}-{digest}"


# What boto3 reads from the environment to pick the S3 server and the credentials: a cached client
# is reused only while these are unchanged (a notebook or a test may point them elsewhere).
_CLIENT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION",
               "AWS_REGION")


def _s3_client(endpoint_url: str | None):
    """boto3's S3 client for ``endpoint_url`` (None: boto3's own settings), one per environment."""
    return _cached_s3_client(endpoint_url or None, tuple(os.environ.get(name) for name in _CLIENT_ENV))


@functools.lru_cache(maxsize=4)
def _cached_s3_client(endpoint_url: str | None, environment: tuple):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


def read_s3_object(url: str, what: str = "object", unless_etag: str | None = None) -> tuple[str, bytes | None]:
    """The ETag and bytes of the S3 object ``url`` (s3://BUCKET/KEY), read with the images' boto3
    settings (collect_sources); bytes None when the object's ETag is still ``unless_etag`` (a
    conditional GET: nothing is downloaded). Raises ExplainError naming ``what`` and ``url``."""
    bucket, _, key = url[len("s3://"):].partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise ExplainError(f"{what} must be an S3 object s3://BUCKET/KEY, got {url!r}")
    try:
        client = _s3_client(os.environ.get(ENDPOINT_URL_ENV) or None)
        response = client.get_object(Bucket=bucket, Key=key,
                                     **({"IfNoneMatch": unless_etag} if unless_etag is not None else {}))
        return response["ETag"], response["Body"].read()
    except Exception as error:  # botocore: no credentials, no such key, no connection
        if unless_etag is not None and _error_code(error) == "304":  # not modified
            return unless_etag, None
        raise ExplainError(f"cannot read {what} {url!r}: {error}") from None


def _error_code(error: Exception) -> str | None:
    """A botocore ClientError's code ("NoSuchKey", "304", ...), None for other errors."""
    return getattr(error, "response", {}).get("Error", {}).get("Code")


def _list_s3(url: str, endpoint_url: str | None,
             output_mark: Callable[[str], bool] | None = None) -> list[ImageSource]:
    """Images of ``s3://BUCKET/PREFIX``: the objects under the folder PREFIX/, or the object PREFIX itself."""
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ExplainError(f"S3 location must look like s3://BUCKET/PREFIX, got {url!r}")
    folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    sources, outputs = [], set()
    try:  # boto3 refuses an endpoint URL or a region it cannot use when the client is made
        for page in _s3_client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key == prefix and not key.endswith("/"):  # s3://bucket/photos/cat.jpg: one object
                    relative = PurePosixPath(key).name
                elif key.startswith(folder):  # s3://bucket/photos lists photos/..., never photos2/...
                    relative = key[len(folder):]
                else:
                    continue
                if output_mark is not None and output_mark(PurePosixPath(relative).name):
                    outputs.add(str(PurePosixPath(relative).parent))
                if not relative.lower().endswith(IMAGE_SUFFIXES):
                    continue
                sources.append(ImageSource(relative, f"s3://{bucket}/{key}",
                                           etag=item.get("ETag", "").strip('"'), endpoint_url=endpoint_url))
    except Exception as error:  # botocore: no credentials, no bucket, no connection, a bad endpoint URL
        problem = ExplainError if _error_code(error) == "NoSuchBucket" else ImageListingError
        raise problem(f"cannot list {url}: {error}") from None
    outputs.discard(".")  # the prefix named itself: its images are the user's to explain
    for output in sorted(outputs):
        _warn_output_folder(f"s3://{bucket}/{folder}{output}")
    kept = [source for source in sources
            if not any(source.key.startswith(output + "/") for output in outputs)]
    return sorted(kept, key=lambda source: source.key)


def _warn_output_folder(location: str) -> None:
    logger.warning("%s holds clearsight outputs (a run's manifest or the mark of an --out): its images are "
                   "not explained; name it on the command line to explain them", location)


def _folder_images(folder: Path, output_mark: Callable[[str], bool] | None = None) -> list[Path]:
    """The jpg/jpeg/png files under ``folder``, sorted; symlinked sub-folders are searched too.

    A folder that cannot be listed raises ExplainError naming it (its images would be left out without a
    word). A sub-folder holding a file for which ``output_mark`` is true (clearsight's outputs: an --out
    inside the image folder) is not searched, with a warning naming it.

    Each folder is searched once: a symlink back to a folder already searched (a loop, or a second
    link to the same folder) is skipped with a warning naming it. Sub-folders are visited in name
    order, so which path of a folder reached twice counts is the same on every run.
    """
    found = []
    searched = set()

    def unlisted(error: OSError) -> None:  # as an S3 prefix that cannot be listed: the run does not start
        raise ExplainError(f"cannot list folder {str(error.filename or folder)!r}: {error.strerror or error}; "
                           "make it readable, or name the images or folders to explain") from None

    for root, folders, files in os.walk(folder, onerror=unlisted, followlinks=True):
        folders.sort()
        try:
            status = os.stat(root)
        except OSError:
            continue
        if (status.st_dev, status.st_ino) in searched:
            logger.warning("%s is a folder already searched (through a symlink); its images are counted once",
                           root)
            folders[:] = []
            continue
        searched.add((status.st_dev, status.st_ino))
        if output_mark is not None and root != str(folder) and any(output_mark(name) for name in files):
            _warn_output_folder(root)
            folders[:] = []
            continue
        found += [Path(root) / name for name in files if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    # a broken symbolic link stays: it fails as an image that cannot be read, named in the manifest and report
    return sorted(item for item in found if item.is_file() or (item.is_symlink() and not item.exists()))


def collect_sources(arguments: list[str] | str | os.PathLike,
                    output_mark: Callable[[str], bool] | None = None) -> list[ImageSource]:
    """Image files, folders (searched recursively for jpg/jpeg/png, symlinked sub-folders included,
    each folder once) and s3://bucket/prefix URLs. ``output_mark``: the name of a file (or object)
    that marks its folder as clearsight's outputs (``explain.manifest.is_output_mark``); such
    sub-folders and sub-prefixes are left out with a warning (one named on its own is listed).

    S3 calls use boto3's usual settings (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL send them to
    another server); the deprecated CLEARSIGHT_AWS_ENDPOINT_URL still does when set. Raises ExplainError for a
    missing path, a folder/prefix without images, or two different images with the same key
    (e.g. ``a/cat.jpg`` and ``b/cat.jpg`` given as files: their outputs would share names).
    The same image named twice is explained once. ``arguments``: a list of locations, or one.
    """
    if isinstance(arguments, (str, os.PathLike)):  # one location, not its characters ("/" is the root)
        arguments = [arguments]
    endpoint_url = os.environ.get(ENDPOINT_URL_ENV) or None
    sources: list[ImageSource] = []
    for argument in arguments:
        argument = str(argument)
        if argument.startswith("s3://"):
            found = _list_s3(argument, endpoint_url, output_mark)
            if not found:
                raise ExplainError(f"no {'/'.join(IMAGE_SUFFIXES)} objects under {argument!r}")
            sources.extend(found)
            continue
        path = Path(argument)
        if path.is_dir():
            found = _folder_images(path, output_mark)
            if not found:
                raise ExplainError(f"no {'/'.join(IMAGE_SUFFIXES)} files in directory {argument!r}")
            for item in found:
                sources.append(ImageSource(item.relative_to(path).as_posix(), str(item)))
        elif path.exists():
            sources.append(ImageSource(path.name, str(path)))
        else:
            raise ExplainError(f"Path {argument!r} does not exist.")
    return unique_sources(sources)


def unique_sources(sources: list[ImageSource]) -> list[ImageSource]:
    """``sources`` with repeats of one location dropped, in order; raises ExplainError when two
    different locations have the same key (they would write the same outputs), or keys whose
    output stems differ only by case (``Cat.jpg`` and ``cat.jpg``: on a case-insensitive file
    system, macOS's and Windows' defaults, their outputs would overwrite each other) or by Unicode
    normalization (``é`` as one character or as ``e`` and a combining accent: macOS's file systems
    ignore it)."""
    unique: dict[str, ImageSource] = {}
    for source in sources:
        first = unique.setdefault(source.key, source)
        if first is not source and os.path.normpath(first.location) != os.path.normpath(source.location):
            raise ExplainError(
                f"{first.location!r} and {source.location!r} are both image {source.key!r} of this run "
                "(a file argument is known by its name, a folder's or a manifest's image by its path in "
                "the folder or bucket) and would write the same outputs: rename one, or explain them in "
                "separate runs with different --out")
    by_folded_stem: dict[str, ImageSource] = {}
    for source in unique.values():
        first = by_folded_stem.setdefault(_folded(source.stem), source)
        if first is not source:
            if unicodedata.normalize("NFC", first.stem) == unicodedata.normalize("NFC", source.stem):
                how = (f"Unicode normalization ({ascii(first.key)} and {ascii(source.key)}: an accented letter as "
                       "one character, or as a letter and a combining accent): on a file system that ignores it "
                       "(macOS)")
            elif first.stem.lower() == source.stem.lower():
                how = "case: on a case-insensitive file system (macOS, Windows)"
            else:
                how = "case and Unicode normalization: on a file system that ignores both (macOS)"
            raise ExplainError(
                f"{first.location!r} and {source.location!r} are images {first.key!r} and {source.key!r} of "
                f"this run, whose output names differ only by {how} they would overwrite each other: rename "
                "one, or explain them in separate runs with different --out")
    return list(unique.values())


def _folded(stem: str) -> str:
    """``stem`` as a file system that ignores case and Unicode normalization (macOS's) compares names: letter
    by letter (``str.lower``, not ``casefold``, which makes 'Straße' and 'STRASSE' one name; no file system does)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", stem).lower())
