"""The detectors of the family as one table: a new detector is one :class:`Detector` entry.

Each entry names its linen module, its loss, the ``config.model`` keys it adds (default, smoke
value, meaning), how many target frames past a training window its loss reads, and any extra
whole-video metrics. ``config.model.variant`` picks the entry; :func:`build_model`,
:func:`criterion`, the data windows and the evaluation read it and never branch on the name.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxmodels.evaluate import online_action as metrics_lib
from jaxmodels.models.online_action import loss as losses
from jaxmodels.models.online_action.model import IDN, TRN, GRUDetector, LSTMDetector, MLPDetector


@dataclasses.dataclass(frozen=True)
class Option:
    """One ``config.model`` key of a detector: its default, its meaning, its ``:smoke`` value
    (None: the ``:smoke`` config keeps the value)."""

    default: Any
    doc: str
    smoke: Any = None


@dataclasses.dataclass(frozen=True)
class Detector:
    """What the family needs to know about one detector.

    Attributes:
      module: the linen module; built as ``module(D, C, m.width, dropout_rate=m.dropout_rate,
        dtype=..., **{k: m[k] for k in options if k is a field of module})``.
      options: the ``config.model`` keys this detector adds (module fields and loss settings).
      loss: ``(config.model, ambiguous) -> (outputs, targets) -> (loss, metrics)``.
      future_steps: ``config.model -> int``, target frames needed past a training window.
      metrics: optional ``(config.model, per-video outputs, per-video targets, ambiguous) ->
        dict`` of extra whole-video metrics (TRN's anticipation mAP).
    """

    module: type[nn.Module]
    options: dict[str, Option]
    loss: Callable[[Any, int | None], Callable]
    future_steps: Callable[[Any], int] = lambda m: 0
    metrics: Callable | None = None


def _trn_loss(m, ambiguous):
    return functools.partial(losses.trn_loss, ignore_index=ambiguous, future_offset=m.future_offset)


def _trn_metrics(m, outputs, targets, ambiguous):
    """Anticipation mAP of decoder step j, keyed by its horizon offset + j (frames ahead)."""
    future = [o["future_scores"] for o in outputs]
    maps = metrics_lib.future_maps(future, targets, offset=m.future_offset, ambiguous=ambiguous)
    return {f"future_mAP_{m.future_offset + j}": v for j, v in enumerate(maps)}


def _idn_loss(m, ambiguous):
    return functools.partial(
        losses.idn_loss,
        ignore_index=ambiguous,
        window=m.window,
        margin=m.margin,
        weight=m.contrastive_weight,
    )


def _frame_loss(m, ambiguous):
    del m
    return functools.partial(losses.frame_loss, ignore_index=ambiguous)


DETECTORS: dict[str, Detector] = {
    "trn": Detector(
        TRN,
        {
            "fusion_size": Option(0, "input projection width; 0: the feature dim (THUMOS 3072)"),
            "dec_steps": Option(4, "decoder steps (anticipated frames); the paper: 8", smoke=3),
            "future_offset": Option(0, "decoder step j targets frame t+offset+j (TRN.pytorch 0)"),
            "linear_init_std": Option(0.0, "0: LeCun normal; TRN.pytorch: N(0, 0.001)"),
        },
        _trn_loss,
        future_steps=lambda m: m.dec_steps + m.future_offset - 1,
        metrics=_trn_metrics,
    ),
    "idn": Detector(
        IDN,
        {
            "window": Option(
                16, "frames per output frame, T + 1 (the paper: 16 chunks = 4 s)", smoke=4
            ),
            "gate_activation": Option("sigmoid", "sigmoid (paper) | hard_sigmoid (code)"),
            "cell_bias": Option(True, "biases in the IDU gates (the released code: none)"),
            "reset_after": Option(False, "r * (W_hh h) instead of W_hh (r * h) (paper)"),
            "margin": Option(1.0, "contrastive-loss margin m"),
            "contrastive_weight": Option(1.0, "weight of the contrastive loss"),
        },
        _idn_loss,
    ),
    "lstm": Detector(
        LSTMDetector,
        {
            "fusion_size": Option(0, "input projection width; 0: the feature dim"),
            "linear_init_std": Option(0.0, "0: LeCun normal; TRN.pytorch: N(0, 0.001)"),
        },
        _frame_loss,
    ),
    "gru": Detector(
        GRUDetector, {"embed_dim": Option(64, "input embedding width", smoke=16)}, _frame_loss
    ),
    "mlp": Detector(MLPDetector, {}, _frame_loss),
}


def detector(name: str) -> Detector:
    """The table entry of ``config.model.variant``."""
    if name not in DETECTORS:
        raise ValueError(f"config.model.variant={name!r} is not one of: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def build_model(m, input_size: int, num_classes: int, dtype=None) -> nn.Module:
    """The detector ``m.variant`` from ``config.model`` (its options that are module fields)."""
    entry = detector(m.variant)
    fields = {f.name for f in dataclasses.fields(entry.module)}
    kwargs = {k: m[k] for k in entry.options if k in fields}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return entry.module(input_size, num_classes, m.width, dropout_rate=m.dropout_rate, **kwargs)


def criterion(m, ambiguous: int | None):
    """The loss of ``m.variant`` as ``(outputs, targets) -> (loss, metrics)``."""
    return detector(m.variant).loss(m, ambiguous)
