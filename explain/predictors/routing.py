"""MultiPredictor: several endpoints behind one predict(batch), least outstanding work first."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, EndpointUnavailableError
from .stats import PredictorStats

__all__ = ["MultiPredictor"]

logger = logging.getLogger(__name__)


class MultiPredictor:
    """predict(batch) sent to the adapter with the fewest images in flight.

    predictors: adapters of endpoints serving the same model (results must not depend on
    which one answers). Ties go to the adapter that was sent fewer images so far, then to
    the first. An adapter raising EndpointUnavailableError (retries exhausted on connection
    errors, throttling, 5xx) is rested for ``cooldown`` seconds and the batch goes to
    another; other errors (a 4xx: the request's fault) are raised as they are. When every
    adapter has failed on a batch, the last error is raised.
    """

    transport_name = "multi"

    def __init__(self, predictors: Sequence, cooldown: float = 30.0) -> None:
        self.predictors = list(predictors)
        if not self.predictors:
            raise ConfigError("MultiPredictor needs at least one predictor, got none")
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown < 0:
            raise ConfigError(f"cooldown must be a number of seconds >= 0, got {cooldown!r}", field="cooldown")
        self.cooldown = float(cooldown)
        self._lock = threading.Lock()
        count = len(self.predictors)
        self._outstanding = [0] * count      # images in flight per adapter
        self._sent = [0] * count             # images routed per adapter, in total
        self._calls = [0] * count
        self._resting_until = [0.0] * count
        self._failovers = 0

    def _pick(self, size: int, tried: set[int]) -> int | None:
        with self._lock:
            now = time.monotonic()
            candidates = [index for index in range(len(self.predictors)) if index not in tried]
            if not candidates:
                return None
            awake = [index for index in candidates if self._resting_until[index] <= now]
            index = min(awake or candidates,
                        key=lambda item: (self._outstanding[item], self._sent[item], item))
            self._outstanding[index] += size
            self._sent[index] += size
            self._calls[index] += 1
            return index

    def request_plan(self, image_shape: tuple[int, int, int]) -> tuple[int, int] | None:
        """(images per request, requests in flight) over all adapters, or None if one has no plan.

        One request's worth per call (the smallest of the adapters'), as many calls in flight
        as the adapters take together, so every endpoint stays busy.
        """
        plans = [getattr(predictor, "request_plan", None) for predictor in self.predictors]
        if any(plan is None for plan in plans):
            return None
        sizes, in_flight = zip(*(plan(image_shape) for plan in plans), strict=True)
        return min(sizes), sum(in_flight)

    def __call__(self, batch) -> list[np.ndarray]:
        """(N, H, W, 3) uint8 -> N arrays, from whichever adapter had the least work in flight."""
        size = len(batch)
        tried: set[int] = set()
        last_error: EndpointUnavailableError | None = None
        while True:
            index = self._pick(size, tried)
            if index is None:
                raise last_error
            try:
                return self.predictors[index](batch)
            except EndpointUnavailableError as error:
                tried.add(index)
                last_error = error
                with self._lock:
                    self._resting_until[index] = time.monotonic() + self.cooldown
                    self._failovers += 1
                logger.warning("%s; sending its batch of %d image(s) to another endpoint", error, size)
            finally:
                with self._lock:
                    self._outstanding[index] -= size

    @property
    def class_names(self) -> list[str] | None:
        for predictor in self.predictors:
            names = getattr(predictor, "class_names", None)
            if names:
                return names
        return None

    @property
    def stats(self) -> dict:
        """Summed counters (PredictorStats), the routing counts and each adapter's own stats (JSON-serialisable)."""
        per_endpoint = []
        for index, predictor in enumerate(self.predictors):
            stats = dict(getattr(predictor, "stats", None) or {})
            with self._lock:
                stats["routed_calls"] = self._calls[index]
                stats["routed_images"] = self._sent[index]
            per_endpoint.append(stats)
        totals = PredictorStats.total(PredictorStats.from_dict(item) for item in per_endpoint).to_dict()
        with self._lock:
            failovers = self._failovers
        names = [str(item.get("endpoint", f"#{index}")) for index, item in enumerate(per_endpoint)]
        return {"transport": self.transport_name, "endpoint": ", ".join(names), **totals,
                "failovers": failovers, "endpoints": per_endpoint}

    def close(self) -> None:
        for predictor in self.predictors:
            predictor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
