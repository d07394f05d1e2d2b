"""``make demo``: package the shipped shapes detector, serve it locally, detect and explain the sample images.

Reproduce with:  .venv/bin/python -m examples.demo --out demo-out
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
def main(model_dir, image_dir, out, num_samples, explain):
    """Package -> serve on the real SageMaker stack -> detect -> explain -> stop."""
    from deploy.client import EndpointClient
    from deploy.local_endpoint import LocalEndpoint
    from deploy.package import describe, package_model_dir
    from explain import load_image

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = _sample_images(image_dir) + sorted(Path(image_dir).glob("*.jp*g"))
    if not paths:
        raise click.UsageError("no .png/.jpg images in %s" % image_dir)

    click.echo("1/4 packaging %s" % model_dir, err=True)
    result = package_model_dir(model_dir, out / "model.tar.gz")
    click.echo("    " + describe(result), err=True)
    classes = result.spec.classes

    click.echo("2/4 starting the local endpoint (multi-model-server + sagemaker-mxnet-inference)", err=True)
    started = time.time()
    with LocalEndpoint(result.archive) as endpoint:
        click.echo("    ready at %s in %.1f s" % (endpoint.url, time.time() - started), err=True)

        click.echo("3/4 detecting objects in %d image(s), one request" % len(paths), err=True)
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
            click.echo("4/4 explaining the detections (Kernel SHAP, %d samples per image)" % num_samples, err=True)
            with demo_explainer(endpoint.url, classes, num_samples) as explainer:
                summary = explainer.run(paths, out)
            click.echo("explanations: %s (report: %s)" % (out, out / "report.html"))
            calls = sum(image.get("model_calls", 0) for image in summary.get("images", []))
            if calls:
                click.echo("model calls: %d" % calls, err=True)
    click.echo("endpoint stopped", err=True)


if __name__ == "__main__":
    main()
