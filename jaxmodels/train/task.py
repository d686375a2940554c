"""The family contract: everything the shared core needs to train, evaluate and sample a family.

A family module (``jaxmodels/models/<family>.py``) exposes ``build_task(config, mesh) -> Task``.
The core turns a ``Task`` into sharded, jitted, donated steps, runs the loop, logs metrics,
checkpoints, resumes, and exposes it through ``jaxmodels train|eval|sample``. A family never
writes its own loop, checkpointing, sharding or logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax

Params = Any  # a pytree of arrays; leaves may be ``nn.Partitioned`` boxes carrying logical names
Batch = Mapping[str, Any]  # a dict of numpy arrays with a leading global-batch dimension
Metrics = dict[str, jax.Array]
LossFn = Callable[[Params, Batch, jax.Array], tuple[jax.Array, Metrics]]
# With Task.init_model_state: (params, batch, rng, state) -> (loss, (metrics, new_state)).
StatefulLossFn = Callable[[Params, Batch, jax.Array, Any], tuple[jax.Array, tuple[Metrics, Any]]]
EvalFn = Callable[[Params, Batch, jax.Array], Metrics]


@dataclasses.dataclass(frozen=True)
class Task:
    """What a family gives the core.

    Attributes:
      init: ``rng -> params``. Called under ``jax.eval_shape`` first, so the core can build the
        sharded state without materialising it on one device. Leaves may be boxed with
        ``nn.with_logical_partitioning``; the core reads the logical names and unboxes.
      loss_fn: ``(params, batch, rng) -> (loss, metrics)``, pure; the model and its static
        config are closed over. ``metrics`` are per-batch means (scalars).
      batch_axes: logical axis names for each batch field, e.g.
        ``{"tokens": ("batch", "length")}``; fields not listed are sharded on their first
        dimension over ``"batch"``.
      train_data: ``(process_index, process_count) -> iterator`` of host-local numpy batches
        (each process yields its share of the global batch). If the iterator has
        ``get_state``/``set_state`` (grain's ``DatasetIterator``), its position is saved in
        checkpoints and restored on resume.
      eval_data: optional ``(process_index, process_count) -> iterable`` of eval batches, a fresh
        pass each call; the core averages ``eval_fn`` metrics over it, prefixed ``eval_``.
      eval_fn: optional ``(params, batch, rng) -> metrics``; defaults to ``loss_fn``'s metrics.
      evaluate: optional ``(params, rng) -> metrics`` run on schedule for whole-dataset
        evaluators (zero-shot accuracy, retrieval recall, mAP, sample quality).
      sample: optional ``(params, rng, workdir) -> str`` for ``jaxmodels sample``: writes its
        output (text, PNG grids) under ``workdir`` and returns a short human-readable summary.
      units: what the progress bar and ``metrics.jsonl`` count throughput in: ``"tokens"``
        (language models), ``"images"`` (image models), ``"examples"`` (the default).
      units_per_example: how many ``units`` one example holds (an LM row: its length).
      flops_per_example: model FLOPs of one example's training step (forward and backward,
        the ``6 N`` convention plus attention), if the family knows them; then the core logs
        ``model_tflops`` (all devices together). 0 means unknown.
      init_model_state: optional ``params -> state``: non-gradient state the family carries
        from step to step (BLIP's momentum encoders and feature queues). With it ``loss_fn`` is
        ``(params, batch, rng, state) -> (loss, (metrics, new_state))``: the core threads the
        state through the steps (and micro-batches), checkpoints it, never differentiates it
        and keeps the old one on a non-finite step. Evaluation and inference see parameters
        only, so such a task must give ``eval_fn``.
      start_params: optional ``() -> params`` (nested, unboxed, ``init``'s tree): the values a
        run takes at step 0 instead of ``init``'s, e.g. an imported HF checkpoint
        (``init.hf``). Called only when a fresh state is made, never when a checkpoint is
        restored, so eval, sample and export read no imported weights.
      model: the linen module whose ``apply({"params": params}, ...)`` is the family's model
        (what ``jaxmodels.load`` returns and an HF export writes), when there is one.
      tokenizer: the tokenizer of the run's text, when it has one (``jaxmodels.load``,
        ``jaxmodels export``).
    """

    init: Callable[[jax.Array], Params]
    loss_fn: LossFn | StatefulLossFn
    train_data: Callable[[int, int], Iterator[Batch]]
    batch_axes: Mapping[str, tuple[str | None, ...]] = dataclasses.field(default_factory=dict)
    eval_data: Callable[[int, int], Iterable[Batch]] | None = None
    eval_fn: EvalFn | None = None
    evaluate: Callable[[Params, jax.Array], Metrics] | None = None
    sample: Callable[[Params, jax.Array, str], str] | None = None
    units: str = "examples"
    units_per_example: float = 1.0
    flops_per_example: float = 0.0
    init_model_state: Callable[[Params], Any] | None = None
    start_params: Callable[[], Params] | None = None
    model: Any = None
    tokenizer: Any = None

    def __post_init__(self):
        if self.init_model_state is not None and self.eval_fn is None:
            raise ValueError("a Task with init_model_state must give eval_fn (params only)")
