"""``make demo``: package the shipped shapes detector, serve it locally, detect and explain the sample images,
then explain a real photo: the face in scikit-image's astronaut portrait, found by OpenCV's
pre-trained Haar cascade behind a small HTTP server that speaks the same wire contract.

Reproduce with:  .venv/bin/python -m examples.demo --out demo-out
(the portrait's run goes to demo-out/portrait: its own manifest, analysis.json and report.html)
"""
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "examples" / "shapes" / "samples"


def _sample_images(folder):
    return sorted(path for path in Path(folder).glob("*.png") if not path.stem.endswith("_mask"))


def demo_explainer(url, classes, num_samples):
    """The demo's Explainer: through the endpoint URL, so detection asks for every score (score_threshold=0)."""
    from explain import Explainer

    return Explainer(url, task="detection", num_samples=num_samples, label_headers=tuple(classes), metrics=True)


@click.command()
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), default=str(REPO / "models" / "shapes-detector"),
              show_default=True, help="Exported model with its model.json.")
@click.option("--images", "image_dir", type=click.Path(exists=True, file_okay=False), default=str(SAMPLES),
              show_default=True, help="Folder of PNG/JPEG images to detect and explain.")
@click.option("--out", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Where the archive, the explanations and report.html go.")
@click.option("--num-samples", type=click.IntRange(2), default=500, show_default=True,
              help="Kernel SHAP samples per image.")
@click.option("--explain/--no-explain", default=True, show_default=True, help="Also explain the detections.")
@click.option("--real-photo/--no-real-photo", default=True, show_default=True,
              help="Also explain the face in a real portrait with OpenCV's face cascade.")
def main(model_dir, image_dir, out, num_samples, explain, real_photo):
    """Package -> serve on the real SageMaker stack -> detect -> explain -> stop -> a real photo."""
    from deploy.client import EndpointClient
    from deploy.local_endpoint import LocalEndpoint
    from deploy.package import describe, package_model_dir
    from explain import RunOptions, load_image

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = _sample_images(image_dir) + sorted(Path(image_dir).glob("*.jp*g"))
    if not paths:
        raise click.UsageError("no .png/.jpg images in %s" % image_dir)

    steps = 5 if explain and real_photo else 4
    click.echo("1/%d packaging %s" % (steps, model_dir), err=True)
    result = package_model_dir(model_dir, out / "model.tar.gz")
    click.echo("    " + describe(result), err=True)
    classes = result.spec.classes

    click.echo("2/%d starting the local endpoint (multi-model-server + sagemaker-mxnet-inference)" % steps, err=True)
    started = time.time()
    with LocalEndpoint(result.archive) as endpoint:
        click.echo("    ready at %s in %.1f s" % (endpoint.url, time.time() - started), err=True)

        click.echo("3/%d detecting objects in %d image(s), one request" % (steps, len(paths)), err=True)
        images = [load_image(path) for path in paths]
        shapes = {image.shape for image in images}
        client = EndpointClient(endpoint.url)
        if len(shapes) == 1:
            detections = client.predict(np.stack(images), score_threshold=0.3)
        else:
            detections = [client.predict(image, score_threshold=0.3)[0] for image in images]
        for path, rows in zip(paths, detections):
            found = ", ".join("%s %.2f [%.2f %.2f %.2f %.2f]" % ((classes[int(row[0])], row[1]) + tuple(row[2:]))
                              for row in rows) or "nothing"
            click.echo("%s: %s" % (path.name, found))

        if explain:
            click.echo("4/%d explaining the detections (Kernel SHAP, %d samples per image)" % (steps, num_samples),
                       err=True)
            # out already holds model.tar.gz (step 1), and an earlier demo's results: start over
            with demo_explainer(endpoint.url, classes, num_samples) as explainer:
                summary = explainer.run(paths, out, RunOptions(restart=True, allow_non_empty_out=True))
            click.echo("explanations: %s (report: %s)" % (out, out / "report.html"))
            calls = sum(image.get("model_calls", 0) for image in summary.get("images", []))
            if calls:
                click.echo("model calls: %d" % calls, err=True)
    click.echo("endpoint stopped", err=True)
    if explain and real_photo:
        click.echo("5/5 a real photo: OpenCV's Haar face cascade on scikit-image's astronaut portrait, served "
                   "over the same wire contract, explained with %d samples" % num_samples, err=True)
        started = time.time()
        portrait_out = out / PORTRAIT_OUT
        summary = _explain_portrait(out / PORTRAIT_NAME, portrait_out, num_samples)
        face = summary["images"][0]
        for target in face["targets"]:
            click.echo("%s: face %.2f [%s]" % (PORTRAIT_NAME, target["score"],
                                              " ".join("%.2f" % value for value in target["box"])))
        click.echo("explanations: %s (report: %s)" % (portrait_out, portrait_out / "report.html"))
        click.echo("    %d segments (%d coarse), %d model calls in %.1f s"
                   % (face["num_segments_used"], face["num_segments_coarse"], face["model_calls"],
                      time.time() - started), err=True)


PORTRAIT_NAME = "astronaut.png"
PORTRAIT_OUT = "portrait"  # its own run: its class names differ from the shapes', and one --out holds one set of settings
PORTRAIT_SIDE = 192  # the face is about 40 px wide; the cascade costs about half its cost at 256 px


def _explain_portrait(path, out, num_samples):
    """Write the portrait to ``path`` and explain its face through the OpenCV wrapper, as any run: into
    ``out`` with its own manifest, analysis.json (with the predictor's counters) and report.html."""
    from PIL import Image
    from skimage import data

    from examples.opencv_detector import DetectorServer
    from explain import Explainer, RunOptions

    path = Path(path).resolve()
    image = Image.fromarray(data.astronaut()).resize((PORTRAIT_SIDE, PORTRAIT_SIDE), Image.BILINEAR)
    image.save(path)
    with DetectorServer(("face",)) as server:
        with Explainer(server.url, task="detection", num_samples=num_samples, label_headers=("face",),
                       metrics=True) as explainer:
            # out holds an earlier demo's portrait: start over, as the shapes' run does
            return explainer.run([path], out, RunOptions(restart=True, allow_non_empty_out=True, progress=False))


if __name__ == "__main__":
    main()
