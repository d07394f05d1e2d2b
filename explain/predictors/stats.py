"""Request counters of a predictor: one typed definition that adds up over endpoints and workers."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["PredictorStats", "StatsRecorder"]


@dataclass(frozen=True)
class PredictorStats:
    """What a predictor sent and received; ``a + b`` sums two (``max_request_bytes`` takes the larger).

    requests: request attempts (retries included). images: images answered. retries: attempts
    repeated after a transient failure. failed_requests: attempts that failed. bytes_sent /
    bytes_received: request and response bodies. max_request_bytes: the largest request body.
    request_seconds: time spent waiting on answers, summed over attempts.
    """

    requests: int = 0
    images: int = 0
    retries: int = 0
    failed_requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    max_request_bytes: int = 0
    request_seconds: float = 0.0

    def __add__(self, other: PredictorStats) -> PredictorStats:
        if not isinstance(other, PredictorStats):
            return NotImplemented
        summed = {item.name: getattr(self, item.name) + getattr(other, item.name) for item in fields(self)}
        summed["max_request_bytes"] = max(self.max_request_bytes, other.max_request_bytes)
        return PredictorStats(**summed)

    @classmethod
    def total(cls, parts: Iterable[PredictorStats]) -> PredictorStats:
        """The sum of ``parts`` (zero counters when there are none)."""
        result = cls()
        for part in parts:
            result = result + part
        return result

    @classmethod
    def from_dict(cls, counters: Mapping) -> PredictorStats:
        """The counters in a stats dict (``predictor.stats``); other keys are ignored, missing ones are 0."""
        return cls(**{item.name: counters[item.name] for item in fields(cls) if item.name in counters})

    def to_dict(self) -> dict:
        """JSON-serialisable counters, in field order."""
        return asdict(self)


class StatsRecorder:
    """Thread-safe recorder of one predictor's counters; ``snapshot()`` gives a PredictorStats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = PredictorStats()

    def sent(self, body_bytes: int) -> None:
        """One request attempt of ``body_bytes`` went out."""
        with self._lock:
            self._stats = replace(self._stats, requests=self._stats.requests + 1,
                                  bytes_sent=self._stats.bytes_sent + body_bytes,
                                  max_request_bytes=max(self._stats.max_request_bytes, body_bytes))

    def add(self, **increments: float) -> None:
        """Add to counters by name (``images=4, request_seconds=0.2``)."""
        with self._lock:
            self._stats = self._stats + PredictorStats(**increments)

    def snapshot(self) -> PredictorStats:
        with self._lock:
            return self._stats
