"""Model calls of one explanation: masked batches built ahead, sent, checked and counted.

A remote endpoint is kept busy: while ``calls_in_flight`` requests are out, the next
request's masked images are already built (masking costs the explainer's CPU, the
forward passes cost the endpoint's), so on an endpoint with its own accelerator the
explainer's work hides behind the model's. Results are consumed in request order, so the
values never depend on the pipelining.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .detection import check_detections, check_probabilities
from .errors import PredictorError
from .masking import mask_images

__all__ = ["ModelCalls", "call_plan"]

Predict = Callable[[np.ndarray], Sequence[np.ndarray]]


def call_plan(predict: Predict, image_shape: tuple[int, int, int], batch_size: int) -> tuple[int, int]:
    """(images per predict call, calls in flight) for masked images of ``image_shape``.

    A predictor with ``request_plan(image_shape)`` (the remote adapters) is fed one request's
    worth of images per call (at most ``batch_size``) with its own ``concurrency`` calls in
    flight; any other callable, or a plan of None, gets ``batch_size`` images per call, one
    call at a time.
    """
    plan = getattr(predict, "request_plan", None)
    planned = plan(tuple(image_shape)) if plan is not None else None
    if planned is None:
        return batch_size, 1
    per_call, in_flight = planned
    return max(1, min(int(per_call), batch_size)), max(1, int(in_flight))


class ModelCalls:
    """Calls ``predict``, validates the answers, counts model calls and the time spent waiting.

    predict: (N, H, W, 3) uint8 -> N arrays, (D_i, 6) detections or (C,) probabilities.
    ``model_calls`` counts images answered; ``seconds`` is the time this thread waited on
    answers (with calls in flight, masking the next batch is not counted).
    """

    def __init__(self, predict: Predict, batch_size: int, task: str,
                 progress: Callable[[int], None] | None):
        self.predict = predict
        self.batch_size = batch_size
        self.task = task
        self.progress = progress
        self.model_calls = 0
        self.seconds = 0.0

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Answers for one batch, (N, H, W, 3) uint8 -> N checked arrays."""
        started = time.perf_counter()
        outputs = self._predict(batch)
        self.seconds += time.perf_counter() - started
        return self._accept(outputs, len(batch))

    def scores(self, foreground: np.ndarray, baseline: np.ndarray, segments: np.ndarray,
               coalitions: np.ndarray, score_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Target scores of masked images, (M, T), in coalition order.

        foreground, baseline: (H, W, 3) uint8; segments: (H, W) int; coalitions: (M, S) bool.
        """
        per_call, in_flight = call_plan(self.predict, foreground.shape, self.batch_size)
        batches = (mask_images(foreground, baseline, segments, coalitions[start:start + per_call])
                   for start in range(0, len(coalitions), per_call))
        if in_flight == 1:
            rows = [score_fn(output) for batch in batches for output in self(batch)]
        else:
            rows = self._pipelined(batches, in_flight, score_fn)
        if not rows:
            return np.zeros((0, 0))
        return np.array(rows, dtype=np.float64)

    def _pipelined(self, batches, in_flight: int, score_fn) -> list[np.ndarray]:
        """Keep ``in_flight`` calls out and one more batch built; consume answers in order."""
        rows: list[np.ndarray] = []
        pending: deque[tuple[int, Future]] = deque()
        pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="explain-call")
        try:
            for batch in batches:
                pending.append((len(batch), pool.submit(self._predict, batch)))
                while len(pending) > in_flight:
                    rows.extend(score_fn(output) for output in self._collect(*pending.popleft()))
            while pending:
                rows.extend(score_fn(output) for output in self._collect(*pending.popleft()))
        except BaseException:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return rows

    def _collect(self, count: int, future: Future) -> list[np.ndarray]:
        started = time.perf_counter()
        outputs = future.result()
        self.seconds += time.perf_counter() - started
        return self._accept(outputs, count)

    def _predict(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            return list(self.predict(batch))
        except PredictorError:
            raise
        except Exception as error:  # an in-process model failing is the predictor's fault
            raise PredictorError(f"predictor failed on a batch of {len(batch)} images: "
                                 f"{type(error).__name__}: {error}") from error

    def _accept(self, outputs: list[np.ndarray], count: int) -> list[np.ndarray]:
        if len(outputs) != count:
            raise PredictorError(f"predictor returned {len(outputs)} results for a batch of "
                                 f"{count} images; expected one per image")
        check = check_detections if self.task == "detection" else check_probabilities
        checked = [check(output, index) for index, output in enumerate(outputs)]
        self.model_calls += count
        if self.progress is not None:
            self.progress(count)
        return checked
