"""Findings of an outside check of what a run writes (review 21), each a test that failed before its fix.

The shipped demo models run in process (no server), with small budgets; exact Shapley values are
computed here by evaluating every coalition of the written segments through the same model.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from explain.cli import main

REPO = Path(__file__).resolve().parent.parent.parent
CLASSIFIER = REPO / "models" / "shapes-classifier"
DETECTOR = REPO / "models" / "shapes-detector"
SAMPLES = REPO / "examples" / "shapes" / "samples"


def explain(*args):
    result = CliRunner().invoke(main, [str(arg) for arg in args], prog_name="python -m explain")
    assert result.exit_code == 0, result.output
    return result


def exact_shapley_values(image, segments, baseline, score):
    """Shapley values of ``score`` ((N, H, W, 3) batch -> (N,)) over ``segments``, every coalition evaluated."""
    count = int(segments.max()) + 1
    coalitions = np.array(list(itertools.product([False, True], repeat=count)))
    masked = np.where(coalitions[:, segments][..., None], image[None], baseline[None])
    values = np.concatenate([score(masked[start:start + 16]) for start in range(0, len(masked), 16)])
    index = {tuple(coalition): row for row, coalition in enumerate(coalitions)}
    phi = np.zeros(count)
    for feature in range(count):
        for coalition in coalitions[~coalitions[:, feature]]:
            size = int(coalition.sum())
            weight = math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
            grown = coalition.copy()
            grown[feature] = True
            phi[feature] += weight * (values[index[tuple(grown)]] - values[index[tuple(coalition)]])
    return phi


def noise_baseline(image, seed=0):
    """The noise baseline of --seed ``seed`` (explain.baselines draws it from the first spawned seed)."""
    baseline_seed, _ = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(baseline_seed).integers(0, 256, size=image.shape, dtype=np.uint8)


def classifier_score(label):
    from explain.predictors.in_process import InProcessPredictor

    predictor = InProcessPredictor(CLASSIFIER, "classification")
    return lambda batch: np.array([output[label] for output in predictor(batch)])


def test_only_values_of_unsplit_segments_with_every_coalition_evaluated_are_called_exact(tmp_path):
    """A run whose coarse game was enumerated was flagged exact (npz, analysis.json, the report's
    "exact Shapley values", standard errors 0) also after refinement split segments, whose values are
    shares of their parents' (3 coarse -> 7 segments: segment 1's value -0.061 against its Shapley
    value 0.065 among the 7)."""
    refined = tmp_path / "refined"
    explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", refined, "-q", "--num-samples", 60,
            "--num-segments", 3, "--max-segments", 7, "--refine-fraction", 0.5, SAMPLES / "shapes_0.png")
    npz = np.load(refined / "shapes_0.png_shap.npz")
    assert npz["segment_levels"].max() > 0  # segments were split
    assert not bool(npz["exact"])
    assert json.loads((refined / "analysis.json").read_text())["images"][0]["exact"] is False
    assert "exact Shapley values" not in (refined / "report.html").read_text(encoding="utf-8")

    plain = tmp_path / "plain"
    explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", plain, "-q", "--num-samples", 60,
            "--num-segments", 3, "--refine-fraction", 0, SAMPLES / "shapes_0.png")
    npz = np.load(plain / "shapes_0.png_shap.npz")
    assert bool(npz["exact"]) and np.all(npz["standard_errors"] == 0)
    assert json.loads((plain / "analysis.json").read_text())["images"][0]["exact"] is True
    assert "exact Shapley values" in (plain / "report.html").read_text(encoding="utf-8")
    phi = exact_shapley_values(npz["image"], npz["segments"], noise_baseline(npz["image"]),
                               classifier_score(int(npz["labels"][0])))
    np.testing.assert_allclose(npz["shap_values"][0], phi, atol=1e-5)


def test_the_help_says_how_many_model_calls_an_image_with_several_targets_costs_below_context_one(tmp_path):
    """--help said "Model evaluations of masked images per image", docs/from-clarify.md "per image": with
    --context below 1 every target is its own game with its own --num-samples (193 calls for
    --num-samples 100 and two targets). The calls are as designed (each target's game differs); the help
    and the Clarify guide say so now."""
    out = tmp_path / "out"
    explain("--endpoint", DETECTOR, "--task", "detection", "--out", out, "-q", "--num-samples", 60,
            "--context", 0.5, SAMPLES / "shapes_2.png")
    image = json.loads((out / "analysis.json").read_text())["images"][0]
    assert len(image["targets"]) == 2 and 60 < image["model_calls"] <= 2 * 60 + 1
    help_text = " ".join(explain("--help").output.split())
    assert "with --context below 1 per detection target" in help_text
    guide = (REPO / "docs" / "from-clarify.md").read_text(encoding="utf-8")
    assert "with `context` below 1 per detection target" in guide


def test_max_images_per_request_caps_the_requests_to_an_in_process_model(tmp_path):
    """Against a model folder --max-images-per-request was dropped without a word: 61 images in 5 requests
    of up to 64 for a cap of 7 (over HTTP the same option gave 7-image requests)."""
    out = tmp_path / "out"
    explain("--endpoint", DETECTOR, "--task", "detection", "--out", out, "-q", "--num-samples", 60,
            "--max-images-per-request", 7, SAMPLES / "shapes_0.png")
    analysis = json.loads((out / "analysis.json").read_text())
    predictor = analysis["predictor"]
    assert "max_images_per_request" not in analysis["settings_not_applied"]
    assert predictor["images"] > 7 * 4 and predictor["requests"] >= -(-predictor["images"] // 7), predictor
    assert predictor["max_request_bytes"] <= 128 + 7 * 320 * 320 * 3  # one npy of at most 7 320x320 images


def test_standard_errors_at_the_fewest_calls_are_unknown_and_just_above_they_cover(tmp_path):
    """At 2S + 2 calls (10 segments, 22 calls) the errors were given and covered 2 of 10 exact values
    (errors 0.16-0.20 with standard errors 0.017-0.057); at 24 calls one had 0.0006 for an error of
    0.13. They are unknown at 2S + 2 now, and widened (Student's t, pooled at the median) while the
    pairs are scarce (reverted once, see the next test, and made again)."""
    covered = known = 0
    for budget in (22, 24, 26):
        out = tmp_path / str(budget)
        explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", out, "-q", "--num-samples", budget,
                "--num-segments", 10, "--refine-fraction", 0, SAMPLES / "shapes_3.png")
        npz = np.load(out / "shapes_3.png_shap.npz")
        assert int(npz["segments"].max()) + 1 == 10 and not bool(npz["exact"])
        errors = npz["standard_errors"][0]
        if budget == 22:
            assert np.isnan(errors).all()
            target = json.loads((out / "analysis.json").read_text())["images"][0]["targets"][0]
            assert target["max_standard_error"] is None
            phi = exact_shapley_values(npz["image"], npz["segments"], noise_baseline(npz["image"]),
                                       classifier_score(int(npz["labels"][0])))
            continue
        assert np.isfinite(errors).all()
        covered += int((np.abs(npz["shap_values"][0] - phi) <= 1.96 * errors).sum())
        known += errors.size
    assert covered >= 17, f"{covered} of {known} exact values within 1.96 standard errors at 24 and 26 calls"


def test_the_readme_budget_for_20_segments_is_spent_and_its_errors_are_known(tmp_path):
    """Review 22 on the first try at the errors above: at the README's --num-samples 60 for 20 segments,
    refinement split nothing (it ranked by the widened errors) and 15 of 60 calls went unspent, without
    a word; and at 34 calls for 12 segments every error was unknown (a fit through every pair was kept).
    Refinement ranks by the fit's own errors; a coarse fit with nothing worth splitting gets the calls."""
    for name in ("shapes_0.png", "shapes_3.png", "shapes_5.png"):
        out = tmp_path / name
        explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", out, "-q", "--num-samples", 60,
                "--num-segments", 20, SAMPLES / name)
        npz = np.load(out / f"{name}_shap.npz")
        image = json.loads((out / "analysis.json").read_text())["images"][0]
        assert np.isfinite(npz["standard_errors"]).all(), name
        assert image["model_calls"] >= 57, (name, image["model_calls"])  # at most 60 + the unmasked image
        split = int(npz["segment_levels"].max()) > 0
        spent = [warning for warning in image["warnings"] if "all 60 samples went to the 20 coarse" in warning]
        assert split != bool(spent), (name, image["warnings"])
    out = tmp_path / "34"
    explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", out, "-q", "--num-samples", 34,
            "--num-segments", 12, "--refine-fraction", 0, SAMPLES / "shapes_3.png")
    npz = np.load(out / "shapes_3.png_shap.npz")
    assert int(npz["segments"].max()) + 1 == 12 and np.isfinite(npz["standard_errors"]).all()


def test_unknown_coarse_errors_take_refinements_calls_and_unknown_errors_are_an_image_warning(tmp_path):
    """A check of the fix above: at 48 calls for 12 segments with refinement every error was unknown, without a
    word (the coarse fit's 2S + 4 calls drew pairs that did not tell two segments apart: the fit was not
    determined); at 24 calls for 8 segments 4 calls were left to refinement, too few for a split, and unspent.
    (The pairs drawn now always tell the segments apart, so at 2S + 4 calls the errors are known; at 2S + 2
    calls, 26 for 12 segments, they are unknown still: fewer than 2 pairs to spare.)"""
    for budget, segments, refine in ((48, 12, 0.4), (24, 8, 0.4), (28, 12, 0.0), (26, 12, 0.0)):
        out = tmp_path / f"{budget}-{segments}"
        explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", out, "-q", "--num-samples", budget,
                "--num-segments", segments, "--refine-fraction", refine, SAMPLES / "shapes_3.png")
        npz = np.load(out / "shapes_3.png_shap.npz")
        image = json.loads((out / "analysis.json").read_text())["images"][0]
        split = int(npz["segments"].max()) + 1 > segments
        # all spent, or refinement split and stopped with less than a split's calls and one more left (6 of 48)
        assert image["model_calls"] >= budget - (7 if split else 1), image["model_calls"]
        if budget != 26:
            assert np.isfinite(npz["standard_errors"]).all(), budget
        else:  # no refinement to take calls from: the errors stay unknown, and the image says so
            assert np.isnan(npz["standard_errors"]).all()
            assert any("standard errors of 1 target(s) are unknown: 26 model calls for 12 segments" in warning
                       for warning in image["warnings"]), image["warnings"]


def test_too_few_calls_to_determine_the_values_are_an_image_warning(tmp_path):
    """Review 24: below 2S + 2 calls the values are a minimum-norm fit and every error unknown, and
    analysis.json said nothing (the terminal's line named no image)."""
    out = tmp_path / "out"
    explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", out, "-q", "--num-samples", 20,
            "--num-segments", 12, SAMPLES / "shapes_0.png")
    image = json.loads((out / "analysis.json").read_text())["images"][0]
    assert any("20 model calls cannot determine the values of 12 segments (2 x 12 + 2 = 26 can)" in warning
               for warning in image["warnings"]), image["warnings"]


def test_the_unmasked_image_is_asked_twice_on_purpose_and_an_image_costs_at_most_one_call_more():
    """An outside check read 'a masked image asked for twice is evaluated once' and found the whole image
    sent twice (65 calls for 64 coalitions of 6 segments). It is sent twice on purpose (the answers are
    compared, see test_failures); the documentation says so, and the count holds."""
    from PIL import Image

    from explain import ExplainConfig, Explainer
    from explain.predictors.in_process import InProcessPredictor

    predictor = InProcessPredictor(CLASSIFIER, "classification")
    image = np.array(Image.open(SAMPLES / "shapes_0.png").convert("RGB"))
    whole = []

    def predict(batch):
        whole.extend(np.array_equal(masked, image) for masked in batch)
        return predictor(batch)

    with Explainer(predict, task="classification", num_samples=200, num_segments=6, refine_fraction=0) as explainer:
        explanation = explainer(image)
    assert explanation.exact and sum(whole) == 2 and explanation.model_calls == 2**6 + 1
    assert "again as the full\n    coalition" in ExplainConfig.__doc__


def test_no_refinement_for_too_many_segments_is_in_the_image_summary(tmp_path):
    """--num-segments above --max-segments: the "no refinement" warning went to stderr only; the image's
    warnings in analysis.json were [] and the report said nothing (the SLIC warning is kept in both)."""
    out = tmp_path / "out"
    explain("--endpoint", CLASSIFIER, "--task", "classification", "--out", out, "-q", "--num-samples", 60,
            "--num-segments", 12, "--max-segments", 8, SAMPLES / "shapes_0.png")
    warnings = json.loads((out / "analysis.json").read_text())["images"][0]["warnings"]
    assert [warning for warning in warnings if "no refinement" in warning], warnings
    assert "no refinement, all 60 samples go to the segments as they are" in (out / "report.html").read_text(
        encoding="utf-8")


def test_converged_is_judged_on_the_values_written_after_refinement():
    # review 44: with target_error 0.2 the coarse fit converged and refinement split it into 64 segments whose
    # errors reached 0.40 of their spread; `converged` still said True
    from explain import Explainer

    for refine_fraction in (0.0, 0.4):
        explanation = Explainer(CLASSIFIER, task="classification", num_samples=500, target_error=0.2,
                                refine_fraction=refine_fraction)(SAMPLES / "shapes_1.png")
        values, errors = explanation.shap_values, explanation.standard_errors
        meets = np.all(errors <= 0.2 * (values.max(axis=1) - values.min(axis=1))[:, None], axis=1)
        assert explanation.converged.tolist() == meets.tolist()
        assert bool(explanation.refinement) == (refine_fraction > 0)
    assert not explanation.converged.all()  # this image's refined values miss the target (0.40 of their spread)
