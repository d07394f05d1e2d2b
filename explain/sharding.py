"""Stable sharding of an image list over N workers: sha256 of the image key modulo N."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .config import plain_number
from .errors import ConfigError

__all__ = ["Shard", "shard_of", "select_shard"]

_SHARD_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 10_000


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) of image ``key`` (a relative path or S3 key, '/'-separated).

    Depends only on the key's UTF-8 bytes, never on the order of the list, the process
    or Python's hash seed, so every worker and every rerun agrees.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``Shard(0, 1)`` is the whole list."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        for name in ("count", "index"):  # np.int64(4) -> 4, as ExplainConfig does
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        for name, value in (("count", self.count), ("index", self.index)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"shard {name} must be an integer, got {value!r}", field="shard")
        if not 1 <= self.count <= MAX_SHARDS:
            raise ConfigError(f"shard count must be in [1, {MAX_SHARDS}], got {self.count}", field="shard")
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard index must be in [0, {self.count - 1}], got {self.index}", field="shard")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``'2/4'`` (index/count, 0-based index) -> Shard(2, 4)."""
        match = _SHARD_TEXT.match(text or "")
        if match is None:
            raise ConfigError(f"shard must look like INDEX/COUNT, e.g. 0/4, got {text!r}", field="shard")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def name(self) -> str:
        """File-name tag: '' for the whole list, else 'shard-<index>-of-<count>'."""
        return "" if self.count == 1 else f"shard-{self.index}-of-{self.count}"

    def holds(self, key: str) -> bool:
        return self.count == 1 or shard_of(key, self.count) == self.index


def select_shard(keys: Sequence[str], shard: Shard) -> list[int]:
    """Positions in ``keys`` that belong to ``shard``, in list order."""
    return [position for position, key in enumerate(keys) if shard.holds(key)]
