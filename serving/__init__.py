"""Batch-aware SageMaker MXNet inference handler: ``model_fn`` / ``transform_fn``.

Runs inside the SageMaker MXNet 1.9.0 container (Python 3.8, numpy < 1.20, no gluoncv):
imports only the standard library, numpy, mxnet and Pillow.
"""
