"""Evaluators run on schedule during training and by ``jaxmodels eval``."""
