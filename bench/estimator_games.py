"""Games for the estimator benchmark: cheap synthetic families and the shipped models' games.

A game maps coalitions (M, S) bool to one output (M,) float64. Every game here is stored as
its full table of 2**S values (``GameTable``), so exact Shapley values come from enumeration
and each estimator's "model call" is a table look-up. Tables of the shipped models' games
(one forward pass per coalition) are cached keyed by the game's parameters, so reruns are
cheap: in ``build/estimator-games/``, or the folder named by ``--game-cache`` or the
environment variable ``CLEARSIGHT_GAME_CACHE`` (a folder outside the checkout survives it).

Families (``FAMILIES``):

* additive: a weighted sum of the features.
* pairwise: additive plus dense pairwise products.
* higher-order: additive plus 2S random three-way products, S/2 four-way and S/4 five-way
  products (what paired Kernel SHAP cannot fit: its error comes from odd orders >= 3).
* thresholds: three hard threshold units, each "at least t of its 3-6 segments visible",
  plus a weak additive context (detector-like step functions).
* max-min: the best of two objects, each the least visible of its two parts (piecewise
  linear OR of ANDs).
* sparse: a random function of 4 segments (a random table over their 16 sub-coalitions)
  plus a weak additive term on the others.
* classifier: the shipped shapes classifier's probability of its top class on a fresh
  scene, over the explainer's default segmentation, noise or image-file baseline.
* detector: the shipped shapes detector's matched score of its top detection on a fresh
  scene (``explain.detection.match_scores``, the explainer's own target rule), likewise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explain.kernel_shap import exact_shapley_values

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("build/estimator-games")
CACHE_ENV = "CLEARSIGHT_GAME_CACHE"


def cache_dir(explicit: str | Path | None = None) -> Path:
    """Where model-game tables live: ``explicit``, else $CLEARSIGHT_GAME_CACHE, else
    build/estimator-games/ (relative to the working directory)."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)

SYNTHETIC_FAMILIES = ("additive", "pairwise", "higher-order", "thresholds", "max-min", "sparse")
MODEL_FAMILIES = ("classifier", "detector")
FAMILIES = SYNTHETIC_FAMILIES + MODEL_FAMILIES
MODEL_DIRS = {"classifier": "models/shapes-classifier", "detector": "models/shapes-detector"}
SCENE_SIZE = 320


@dataclass(frozen=True)
class GameTable:
    """One game as the table of its 2**S values and its exact Shapley values.

    name: e.g. "detector S=16 #0 noise". values: (2**S,) float64, entry c is f(z) for the
    coalition whose bit i is feature i. shapley: (S,) float64 exact values.
    """

    family: str
    name: str
    num_features: int
    values: np.ndarray
    shapley: np.ndarray

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """coalitions: (M, S) bool or {0, 1} -> (M,) float64."""
        rows = np.asarray(coalitions) > 0.5
        codes = rows.astype(np.int64) @ (np.int64(1) << np.arange(self.num_features, dtype=np.int64))
        return self.values[codes]


def all_coalitions(num_features: int) -> np.ndarray:
    """(2**S, S) bool; row c holds the bits of c."""
    codes = np.arange(2**num_features, dtype=np.int64)
    return ((codes[:, None] >> np.arange(num_features)) & 1).astype(bool)


def _table(family: str, name: str, num_features: int, game: Callable[[np.ndarray], np.ndarray],
           values: np.ndarray | None = None) -> GameTable:
    if values is None:
        values = np.asarray(game(all_coalitions(num_features)), dtype=np.float64)
    shapley = exact_shapley_values(lambda rows: values[_codes(rows)][:, None], num_features)[0]
    return GameTable(family, name, num_features, values, shapley)


def _codes(rows: np.ndarray) -> np.ndarray:
    return rows.astype(np.int64) @ (np.int64(1) << np.arange(rows.shape[1], dtype=np.int64))


def synthetic_game(family: str, num_features: int,
                   rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """A random game of ``family`` over S features: coalitions (M, S) bool -> (M,) float64."""
    count = num_features
    weights = rng.normal(size=count)
    if family == "additive":
        return lambda z: z.astype(np.float64) @ weights
    if family == "pairwise":
        pairs = np.triu(rng.normal(size=(count, count)), 1) * (1.0 / np.sqrt(count))

        def pairwise(z):
            z = z.astype(np.float64)
            return z @ weights + np.einsum("mi,ij,mj->m", z, pairs, z)
        return pairwise
    if family == "higher-order":
        terms = ([rng.choice(count, 3, replace=False) for _ in range(2 * count)]
                 + [rng.choice(count, 4, replace=False) for _ in range(count // 2)]
                 + [rng.choice(count, 5, replace=False) for _ in range(count // 4)])
        term_weights = rng.normal(size=len(terms))

        def higher_order(z):
            z = z.astype(np.float64)
            products = np.stack([z[:, term].prod(axis=1) for term in terms], axis=1)
            return z @ weights + products @ term_weights
        return higher_order
    if family == "thresholds":
        units = []
        for _ in range(3):
            size = int(rng.integers(3, 7))
            members = rng.choice(count, size, replace=False)
            units.append((members, int(rng.integers(2, size + 1)), rng.uniform(0.5, 1.5)))
        context = rng.normal(size=count) * 0.03

        def thresholds(z):
            total = z.astype(np.float64) @ context
            for members, threshold, height in units:
                total = total + height * (z[:, members].sum(axis=1) >= threshold)
            return total
        return thresholds
    if family == "max-min":
        order = rng.permutation(count)
        parts = [order[0:2], order[2:4], order[4:7], order[7:9]]
        scale = rng.uniform(0.6, 1.0, size=2)

        def max_min(z):
            visible = [z[:, part].mean(axis=1) for part in parts]
            first = np.minimum(visible[0], visible[1]) * scale[0]
            second = np.minimum(visible[2], visible[3]) * scale[1]
            return np.maximum(first, second)
        return max_min
    if family == "sparse":
        members = rng.choice(count, 4, replace=False)
        table = rng.normal(size=16)
        weak = rng.normal(size=count) * 0.02

        def sparse(z):
            index = z[:, members].astype(np.int64) @ (1 << np.arange(4))
            return table[index] + z.astype(np.float64) @ weak
        return sparse
    raise ValueError(f"unknown synthetic family {family!r}; expected one of {SYNTHETIC_FAMILIES}")


def synthetic_table(family: str, num_features: int, instance: int, root_seed: int) -> GameTable:
    """The ``instance``-th random game of ``family`` at S features, drawn from ``root_seed``."""
    rng = np.random.default_rng([root_seed, FAMILIES.index(family), num_features, instance])
    game = synthetic_game(family, num_features, rng)
    return _table(family, f"{family} S={num_features} #{instance}", num_features, game)


def _model_game_values(family: str, num_features: int, instance: int, root_seed: int,
                       baseline_kind: str, cache: Path, batch_size: int = 256) -> tuple[np.ndarray, dict]:
    """All 2**S outputs of a shipped model's game on a fresh scene; (2**S,) float64, metadata."""
    from examples.shapes.dataset import draw_background, generate_scene
    from explain.baselines import make_baseline
    from explain.detection import match_scores, select_detection_targets
    from explain.masking import mask_images
    from explain.predictors import InProcessPredictor
    from explain.segmentation import segment_image

    rng = np.random.default_rng([root_seed, FAMILIES.index(family), num_features, instance, 1])
    scene = generate_scene(rng, SCENE_SIZE, SCENE_SIZE)
    image = scene.image
    if baseline_kind == "file":
        from PIL import Image

        path = cache / f"baseline-{root_seed}-{family}-{num_features}-{instance}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_background(rng, SCENE_SIZE, SCENE_SIZE)).save(path)
        baseline = make_baseline(image, str(path), rng)
    else:
        baseline = make_baseline(image, "noise", rng)
    segments = segment_image(image, num_features)
    used = int(segments.max()) + 1
    if used != num_features:
        raise RuntimeError(f"segmentation gave {used} segments, wanted {num_features}")
    task = "classification" if family == "classifier" else "detection"
    predictor = InProcessPredictor(MODEL_DIRS[family], task, batch_size=64)
    unmasked = predictor(image[None])[0]
    if task == "detection":
        targets = select_detection_targets(unmasked, 1, 0.5)
        if len(targets) == 0:
            targets = select_detection_targets(unmasked, 1, 0.0)

        def score(output):
            return match_scores(targets, output, 0.5)[0]
        meta = {"class": int(targets[0, 0]), "score": float(targets[0, 1])}
    else:
        label = int(np.argmax(unmasked))

        def score(output):
            return float(output[label])
        meta = {"class": label, "score": float(unmasked[label])}
    coalitions = all_coalitions(num_features)
    values = np.empty(len(coalitions))
    for start in range(0, len(coalitions), batch_size):
        rows = coalitions[start:start + batch_size]
        outputs = predictor(mask_images(image, baseline, segments, rows))
        values[start:start + len(rows)] = [score(output) for output in outputs]
    predictor.close()
    return values, meta


def model_table(family: str, num_features: int, instance: int, root_seed: int,
                cache: str | Path | None = None) -> GameTable:
    """A shipped model's game on a fresh scene; baselines alternate between uniform noise and
    an image file (a background of the shapes dataset), the classifier's first instance a file.
    cache: the folder of cached tables (``cache_dir``)."""
    cache = cache_dir(cache)
    baseline_kind = ("noise", "file")[(instance + (family == "classifier")) % 2]
    key = {"family": family, "S": num_features, "instance": instance, "root": root_seed,
           "baseline": baseline_kind, "scene": SCENE_SIZE, "version": 1}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{family}-{num_features}-{instance}-{digest}.npz"
    if path.is_file():
        values = np.load(path)["values"]
    else:
        logger.warning("enumerating 2**%d coalitions of %s #%d through the model (cached in %s)",
                       num_features, family, instance, path)
        values, meta = _model_game_values(family, num_features, instance, root_seed, baseline_kind,
                                          cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
        with open(partial, "wb") as handle:  # whole or absent: the folder may be shared
            np.savez_compressed(handle, values=values, key=json.dumps(key), meta=json.dumps(meta))
        os.replace(partial, path)
    return _table(family, f"{family} S={num_features} #{instance} {baseline_kind}", num_features,
                  None, values)


def game_tables(families: list[str], sizes: list[int], instances: int, model_instances: int,
                model_sizes: list[int], root_seed: int,
                cache: str | Path | None = None) -> list[GameTable]:
    """Every game of the benchmark, in a fixed order (model games from ``cache``, see
    ``cache_dir``)."""
    tables = []
    for family in families:
        if family in MODEL_FAMILIES:
            for num_features in model_sizes:
                tables += [model_table(family, num_features, index, root_seed, cache)
                           for index in range(model_instances)]
        else:
            for num_features in sizes:
                tables += [synthetic_table(family, num_features, index, root_seed)
                           for index in range(instances)]
    return tables
