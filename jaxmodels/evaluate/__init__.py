"""Evaluators run on schedule during training and by ``jaxmodels eval``, chosen by name.

How a family offers them: its ``build_task`` writes ``{name: builder}``, each builder a
zero-argument function returning an ``(params, rng) -> metrics`` evaluator (zero-shot,
retrieval, Fréchet distance, likelihood, mAP, extrapolation, ...), and passes it with
``config.evals`` through :func:`select`; the result is its ``Task.evaluate``::

    offered = {"zeroshot": lambda: zero_shot(...), "retrieval": lambda: retrieval(...)}
    return Task(..., evaluate=evaluate.select(config.evals, offered))

Only the chosen evaluators are built. ``config.evals`` (default ``()``, ``jaxmodels.config``)
holds the config's defaults, each config file listing the names its family offers in a
comment; ``--config.evals=a,b`` picks another set, also on a saved run
(``jaxmodels eval --config FILE --workdir DIR --config.evals=a,b``: ``evals`` may differ from
the run's ``config.json``), and ``--config.evals=`` none. An unknown name fails naming the
offered ones.

Metrics: the loop writes each one as ``eval_<metric>``. An evaluator names its metrics after
itself (``zeroshot_<task>_top1``, so ``eval_zeroshot_digits_top1``); older ones keep the names
their results tables use (``i2t_recall@1``, ``mAP``, ``ppl_x2``). Two chosen evaluators that
report the same metric fail instead of overwriting each other.

Helpers the evaluators share: :func:`~jaxmodels.evaluate.chunked.chunked_map` (a jitted
function over a host dataset in fixed-size zero-padded chunks) and
:class:`~jaxmodels.evaluate.retrieval.CaptionIndex` (image <-> distinct-caption recall@K).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Evaluate = Callable[[Any, Any], dict[str, Any]]  # (params, rng) -> metrics


def names(evals: Iterable[str] | str) -> list[str]:
    """``config.evals`` as a list of names, in order, without repeats or blanks.

    Accepts a tuple of names, one comma-separated string, or a tuple holding such strings (what
    ``--config.evals=a,b`` gives a tuple key).
    """
    items = [evals] if isinstance(evals, str) else list(evals)
    out = []
    for item in items:
        for name in str(item).split(","):
            if name.strip() and name.strip() not in out:
                out.append(name.strip())
    return out


def select(
    evals: Iterable[str] | str, available: Mapping[str, Callable[[], Evaluate]]
) -> Evaluate | None:
    """Returns one ``(params, rng) -> metrics`` running the named evaluators in order.

    ``evals`` is ``config.evals`` (see :func:`names`); an unknown name fails naming the ones this
    family offers. No names: None (no scheduled evaluation).
    """
    chosen_names = names(evals)
    unknown = [n for n in chosen_names if n not in available]
    if unknown:
        offered = ", ".join(sorted(available)) or "none"
        raise ValueError(f"config.evals: unknown evaluator(s) {unknown}; offered: {offered}")
    if not chosen_names:
        return None
    chosen = {n: available[n]() for n in chosen_names}

    def evaluate(params, rng) -> dict[str, Any]:
        out, source = {}, {}
        for name, fn in chosen.items():
            metrics = fn(params, rng)
            clash = sorted(metrics.keys() & out.keys())
            if clash:
                raise ValueError(
                    f"config.evals: evaluators {source[clash[0]]!r} and {name!r} both report "
                    f"{clash}; choose one of them"
                )
            out.update(metrics)
            source.update(dict.fromkeys(metrics, name))
        return out

    return evaluate
