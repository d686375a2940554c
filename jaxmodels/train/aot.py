"""Ahead-of-time check: lower and compile a config's train step against abstract inputs.

Nothing is allocated or run: the state is abstract (shapes, dtypes, shardings) and the batch
is described by the shapes of one host batch. The compiled executable reports the memory
each device needs and XLA's FLOP estimate, so a config can be sized before a pod is paid for.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxmodels.train import loop


def _abstract_batch(batch, shardings):
    procs = jax.process_count()
    return {
        k: jax.ShapeDtypeStruct(
            (np.shape(v)[0] * procs, *np.shape(v)[1:]), np.asarray(v).dtype, sharding=shardings[k]
        )
        for k, v in batch.items()
    }


def compile_report(config) -> dict[str, float]:
    """Compiles the train step of ``config``; returns per-device memory (bytes) and FLOPs."""
    run = loop.build(config, workdir=None)
    batch = next(iter(run.task.train_data(jax.process_index(), jax.process_count())))
    train_step, bshard = loop.build_train_step(run, batch)
    compiled = train_step.lower(run.abstract_state, _abstract_batch(batch, bshard)).compile()
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    report = {
        "argument_bytes": mem.argument_size_in_bytes,
        "output_bytes": mem.output_size_in_bytes,
        "temp_bytes": mem.temp_size_in_bytes,
        "generated_code_bytes": mem.generated_code_size_in_bytes,
        "alias_bytes": mem.alias_size_in_bytes,
        "flops_per_step": float((cost or {}).get("flops", float("nan"))),
    }
    report["peak_bytes_estimate"] = (
        report["argument_bytes"]
        + report["output_bytes"]
        - report["alias_bytes"]
        + report["temp_bytes"]
    )
    return report


def format_report(report: dict[str, float]) -> str:
    rows = [f"{'per device':<22}{'value':>16}"]
    for k, v in report.items():
        shown = (
            f"{v / 2**30:,.3f} GiB" if k.endswith("bytes") or k.endswith("estimate") else f"{v:.4g}"
        )
        rows.append(f"{k:<22}{shown:>16}")
    return "\n".join(rows)
