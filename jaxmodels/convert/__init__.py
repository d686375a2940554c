"""Checkpoint converters (HF transformers PyTorch models -> jaxmodels params)."""
