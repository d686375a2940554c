"""Checkpoint converters (HF transformers PyTorch models -> jaxmodels params)."""

from jaxmodels.convert.hf import Pretrained, from_hf, init_from, load_pretrained

__all__ = ["Pretrained", "from_hf", "init_from", "load_pretrained"]
