"""Clarify analysis configurations written by the installed SageMaker SDK's own classes (test helper).

What ``SageMakerClarifyProcessor.run_explainability`` uploads as analysis_config.json for an
image explainability job: DataConfig, ModelConfig, ModelPredictedLabelConfig, ImageConfig and
SHAPConfig through ``_AnalysisConfigGenerator.explainability``. Needs the ``aws`` extra.
"""

from __future__ import annotations

import logging

ENDPOINT_NAME = "clarify-demo-endpoint"


def sdk_analysis_config(model_type: str, label_headers: list[str], *, content_type: str = "application/x-npy",
                        probability: str | None = None, custom_attributes: str | None = None,
                        target_model: str | None = None, num_samples: int = 16, num_segments: int = 4,
                        max_objects: int | None = None, probability_threshold: float | None = None) -> dict:
    """analysis_config.json as the SageMaker SDK writes it for an image explainability job."""
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)  # it logs where it looked for defaults
    from sagemaker import clarify

    data = clarify.DataConfig(s3_data_input_path="s3://bucket/images/", s3_output_path="s3://bucket/out/",
                              dataset_type="application/x-image")
    model = clarify.ModelConfig(endpoint_name=ENDPOINT_NAME, content_type=content_type,
                                accept_type="application/json", custom_attributes=custom_attributes,
                                target_model=target_model)
    labels = clarify.ModelPredictedLabelConfig(label_headers=label_headers, probability=probability,
                                               probability_threshold=probability_threshold)
    image = clarify.ImageConfig(model_type=model_type, num_segments=num_segments, segment_compactness=5,
                                max_objects=max_objects)
    shap = clarify.SHAPConfig(num_samples=num_samples, seed=1, image_config=image)
    return clarify._AnalysisConfigGenerator.explainability(data, model, labels, shap)
