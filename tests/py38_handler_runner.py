"""Run requests through a packed ``code/`` handler in-process, under whatever Python runs this file.

Usage (Python 3.8 syntax, standard library and numpy only, as in the SageMaker container)::

    python tests/py38_handler_runner.py MODEL_DIR REQUESTS_DIR OUT.json

MODEL_DIR is an extracted ``model.tar.gz`` (weights, model.json, ``code/inference.py``);
REQUESTS_DIR holds ``requests.json`` (a list of ``{"name", "body", "content_type", "accept"}``,
``body`` naming a file beside it). OUT.json gets the interpreter's and libraries' versions, the
file the handler was imported from, and per request either ``{"status": 200, "content_type",
"body"}`` (the response text, JSON) or ``{"status": N, "message"}`` for an error the handler
raised (``N`` = its ``status``, 500 for any other exception, with its type). The tests on the
development Python make every assertion; this file only runs the requests.
"""
import importlib
import json
import os
import sys


def main(model_dir, requests_dir, out_path):
    sys.path.insert(0, os.path.join(model_dir, "code"))
    inference = importlib.import_module("inference")
    import mxnet
    import numpy
    import PIL

    handler = sys.modules[inference.transform_fn.__module__]
    model = inference.model_fn(model_dir)
    with open(os.path.join(requests_dir, "requests.json")) as handle:
        requests = json.load(handle)
    results = []
    for request in requests:
        with open(os.path.join(requests_dir, request["body"]), "rb") as handle:
            body = handle.read()
        result = {"name": request["name"]}
        try:
            payload, content_type = inference.transform_fn(model, body, request["content_type"], request["accept"])
        except Exception as error:  # noqa: BLE001 - reported, the caller asserts on it
            status = getattr(error, "status", None)
            result.update({"status": status if isinstance(status, int) else 500,
                           "message": getattr(error, "message", None) or "%s: %s" % (type(error).__name__, error)})
        else:
            result.update({"status": 200, "content_type": content_type,
                           "body": payload.decode("utf-8") if isinstance(payload, bytes) else payload})
        results.append(result)
    report = {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "numpy": numpy.__version__,
        "mxnet": mxnet.__version__,
        "pillow": PIL.__version__,
        "handler_file": os.path.abspath(handler.__file__),
        "results": results,
    }
    with open(out_path, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(*sys.argv[1:4])
