"""The family entry point the registry resolves."""

from jaxmodels.models.lm.model import build_task

__all__ = ["build_task"]
