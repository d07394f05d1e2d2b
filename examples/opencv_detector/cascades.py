"""OpenCV's pre-trained detectors (Haar cascades) as a batch detector with scores in (0, 1).

``CascadeDetector(names)`` detects with each named cascade (``CASCADES``) on every image and
returns rows ``[class_id, score, x0/w, y0/h, x1/w, y1/h]``, class_id = position of the
cascade in ``names``, sorted by score descending: the project's wire contract.

Score: OpenCV groups the windows its cascade accepts and reports, per detection, how many
windows it grouped (``detectMultiScale2``'s numDetections, "neighbours"); detections with
fewer than ``min_neighbors + 1`` windows are dropped. The score maps that count n
monotonically into (0, 1): score = n / (n + ``HALF_SCORE_NEIGHBOURS``) (n = 8 gives 0.5).
A face that is partly hidden is accepted by fewer windows, so its score falls gradually
before the detection disappears, which is what an explanation needs. (The boosted sum of
the last stage, ``detectMultiScale3``'s level weight, was tried first: it jumps by several
units when a few pixels change and is not monotone in how much of a face is visible.)

A ``cv2.CascadeClassifier`` must not be used by two threads at once: each thread gets its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["CASCADES", "CascadeSpec", "CascadeDetector", "HALF_SCORE_NEIGHBOURS", "cascade_path"]

HALF_SCORE_NEIGHBOURS = 8.0


@dataclass(frozen=True)
class CascadeSpec:
    """One cascade file of opencv-python's ``cv2.data.haarcascades`` and how it is run."""

    file: str
    scale_factor: float = 1.1
    min_neighbors: int = 3
    min_size: int = 0  # pixels, the smallest window searched (0: the cascade's own size)


CASCADES = {
    "face": CascadeSpec("haarcascade_frontalface_default.xml"),
    "face_alt2": CascadeSpec("haarcascade_frontalface_alt2.xml"),
    "profile_face": CascadeSpec("haarcascade_profileface.xml"),
    "eye": CascadeSpec("haarcascade_eye.xml"),
    "cat_face": CascadeSpec("haarcascade_frontalcatface_extended.xml"),
    "upper_body": CascadeSpec("haarcascade_upperbody.xml"),
    "full_body": CascadeSpec("haarcascade_fullbody.xml"),
    "plate": CascadeSpec("haarcascade_russian_plate_number.xml"),
}


def cascade_path(name: str) -> str:
    """Path of a named cascade's XML file inside opencv-python."""
    import cv2

    return cv2.data.haarcascades + CASCADES[name].file


class CascadeDetector:
    """Callable batch detector: (N, H, W, 3) uint8 RGB -> N float32 arrays (D_i, 6)."""

    def __init__(self, names: tuple[str, ...] = ("face",)):
        unknown = [name for name in names if name not in CASCADES]
        if unknown or not names:
            raise ValueError(f"unknown cascade(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(CASCADES)}")
        self.names = tuple(names)
        self._local = threading.local()

    def _cascades(self) -> list:
        cascades = getattr(self._local, "cascades", None)
        if cascades is None:
            import cv2

            cascades = []
            for name in self.names:
                cascade = cv2.CascadeClassifier(cascade_path(name))
                if cascade.empty():
                    raise RuntimeError(f"OpenCV could not load the {name} cascade from {cascade_path(name)}")
                cascades.append(cascade)
            self._local.cascades = cascades
        return cascades

    def detect(self, image: np.ndarray) -> np.ndarray:
        """One (H, W, 3) uint8 RGB image -> (D, 6) float32 rows sorted by score descending."""
        import cv2

        height, width = image.shape[:2]
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        rows = []
        for class_id, (name, cascade) in enumerate(zip(self.names, self._cascades())):
            spec = CASCADES[name]
            boxes, neighbours = cascade.detectMultiScale2(
                grey, scaleFactor=spec.scale_factor, minNeighbors=spec.min_neighbors,
                minSize=(spec.min_size, spec.min_size))
            for (x, y, box_width, box_height), count in zip(np.reshape(boxes, (-1, 4)),
                                                             np.ravel(neighbours)):
                score = float(count) / (float(count) + HALF_SCORE_NEIGHBOURS)
                rows.append([class_id, score, x / width, y / height,
                             min(1.0, (x + box_width) / width), min(1.0, (y + box_height) / height)])
        if not rows:
            return np.zeros((0, 6), dtype=np.float32)
        rows = np.array(rows, dtype=np.float32)
        return rows[np.argsort(-rows[:, 1], kind="stable")]

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        return [self.detect(image) for image in batch]
