"""Kernel SHAP explanations over superpixels for image detection and classification endpoints."""
