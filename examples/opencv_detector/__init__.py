"""OpenCV's pre-trained cascade detectors behind the project's wire contract (a real model nobody here trained)."""

from .cascades import CASCADES, CascadeDetector
from .server import DetectorServer

__all__ = ["CASCADES", "CascadeDetector", "DetectorServer"]
