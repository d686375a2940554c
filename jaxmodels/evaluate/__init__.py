"""Evaluators run on schedule during training and by ``jaxmodels eval``, chosen by name.

A family's ``build_task`` offers the evaluators that fit it as ``{name: builder}``, each
builder a zero-argument function returning ``(params, rng) -> metrics`` (zero-shot, retrieval,
Fréchet distance, likelihood, mAP, extrapolation, ...), and passes ``config.evals`` (a tuple
of names) through :func:`select`; the result is its ``Task.evaluate``. Only the chosen
evaluators are built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Evaluate = Callable[[Any, Any], dict[str, Any]]  # (params, rng) -> metrics


def select(
    names: Iterable[str] | str, available: Mapping[str, Callable[[], Evaluate]]
) -> Evaluate | None:
    """Returns one ``(params, rng) -> metrics`` running the named evaluators in order.

    ``names`` is ``config.evals`` (a tuple, or one comma-separated string); an unknown name
    fails naming the ones this family offers. No names: None (no scheduled evaluation).
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(available))
    if unknown:
        offered = ", ".join(sorted(available)) or "none"
        raise ValueError(f"config.evals: unknown evaluator(s) {unknown}; offered: {offered}")
    if not names:
        return None
    chosen = [available[n]() for n in names]

    def evaluate(params, rng) -> dict[str, Any]:
        out = {}
        for fn in chosen:
            out.update(fn(params, rng))
        return out

    return evaluate
