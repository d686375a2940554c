"""Checkpoint converters (HF transformers PyTorch models -> jaxmodels params)."""

from jaxmodels.convert.hf import from_hf

__all__ = ["from_hf"]
