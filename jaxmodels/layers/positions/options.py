"""One frozen value for a model's position encoding, passed whole down to attention.

Names (``POSITIONS``): ``none`` (NoPE), ``learned`` and ``sinusoidal`` (absolute, added to the
token embeddings), ``shaw`` (relative key/value embeddings inside each attention layer),
``t5`` (bucketed relative bias shared by all layers), ``alibi`` (fixed linear bias), ``rope``
(rotary, with optional scaling) and ``xpos`` (rotary with an exponential decay).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxmodels.layers.positions.rope_scaling import ROPE_SCALINGS

POSITIONS = ("none", "learned", "sinusoidal", "shaw", "t5", "alibi", "rope", "xpos")
ROTARY = ("rope", "xpos")


@dataclasses.dataclass(frozen=True)
class PositionOptions:
    """A position encoding and its options (hashable, so linen modules can hold it)."""

    name: str = "rope"  # one of POSITIONS
    max_len: int = 2048  # learned table size (positions beyond it are clipped)
    rope_base: float = 10000.0  # RoPE/xPos base theta (RoFormer eq. 15)
    rotary_fraction: float = 1.0  # fraction of head_dim rotated (partial rotary)
    rope_layout: str = "half"  # "half" (GPT-NeoX/Llama) or "interleaved" (RoFormer)
    rope_scaling: tuple[tuple[str, Any], ...] = ()  # items of {"type": ..., **options}
    xpos_scale_base: float = 512.0  # xPos scale base s (Sun et al. 2022, eq. 12)
    xpos_gamma: float = 0.4  # xPos gamma (eq. 11)
    shaw_max_distance: int = 16  # Shaw clipping distance k (Shaw et al. 2018, eq. 7)
    t5_num_buckets: int = 32  # T5 buckets (Raffel et al. 2020, sec. 2.1)
    t5_max_distance: int = 128  # T5 max distance

    def __post_init__(self):
        if self.name not in POSITIONS:
            raise ValueError(f"position={self.name!r} is unknown; choose one of {POSITIONS}")
        kind = dict(self.rope_scaling).get("type", "none")
        if kind not in ROPE_SCALINGS:
            raise ValueError(f"rope_scaling type {kind!r} is unknown; one of {ROPE_SCALINGS}")
        if self.rope_layout not in ("half", "interleaved"):
            raise ValueError(f"rope_layout must be 'half' or 'interleaved': {self.rope_layout!r}")

    @property
    def rotary(self) -> bool:
        """True when attention rotates q and k (RoPE or xPos)."""
        return self.name in ROTARY

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PositionOptions:
        """Builds options from a config dict (``rope_scaling`` may be a dict); unknown keys fail."""
        cfg = dict(cfg)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - fields)
        if unknown:
            raise ValueError(f"unknown position option(s) {unknown}; known: {sorted(fields)}")
        scaling = cfg.get("rope_scaling") or {}
        cfg["rope_scaling"] = tuple(sorted(dict(scaling).items()))
        return cls(**cfg)

    def with_scaling(self, scaling: Mapping[str, Any] | None) -> PositionOptions:
        """The same options with another RoPE scaling (e.g. at inference on longer inputs)."""
        return dataclasses.replace(self, rope_scaling=tuple(sorted(dict(scaling or {}).items())))


NOPE = PositionOptions(name="none")  # blocks whose attention sees no positions (ViT, CLIP)
