"""Batch-aware SageMaker MXNet inference handler: ``model_fn`` / ``transform_fn``.

Runs inside the SageMaker MXNet 1.9.0 container (Python 3.8, numpy < 1.20, no gluoncv):
imports only the standard library, numpy, mxnet and Pillow. The entry points are loaded on
first use, so importing the package (e.g. to find its files for packaging) does not load mxnet.

``__version__`` is the project's version, defined here once because every layer may import
serving/ (setup.cfg, the CLIs' --version and the clearsight package read it).
"""
import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "model_fn", "transform_fn", "ServedModel", "ModelSpec", "Preprocess", "load_model_spec",
           "ServingError"]

_WHERE = {"model_fn": "handler", "transform_fn": "handler", "ServedModel": "handler",
          "ModelSpec": "model_spec", "Preprocess": "model_spec", "load_model_spec": "model_spec",
          "ServingError": "errors"}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module("." + _WHERE[name], __name__), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
