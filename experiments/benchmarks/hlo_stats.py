"""What a compiled step does, counted from its optimized HLO text (any backend, no device run).

``stats(lowered, compiled)`` returns XLA's own estimate of the bytes the step reads and writes
(its cost analysis) beside counts of the operations that cost memory passes or slow matmuls:
element-wise selects and finiteness tests over large arrays (a ``where`` over the whole train
state shows up here), argmax-style reductions (a reduce that returns a value and an index) and
while loops, from the optimized HLO; and the dots by their operand and result dtypes
(``dot_bf16,bf16->f32``), from the lowered StableHLO, since the CPU compiler turns every bf16
dot into a float32 one. "Large" is at least ``big`` elements (default 65536), so per-row and
scalar work does not count. The lm_throughput and online_action benchmarks print these with
``--hlo`` to show a change's effect on CPU, where step times are too noisy to show it.
"""

from __future__ import annotations

import collections
import math
import re

_T = r"tensor<((?:[\d?]+x)*)([a-z]+\d*)>"  # the dims and element type of a tensor<16x256xbf16>
_MATMUL = re.compile(rf"stablehlo\.(dot_general|convolution)\b.*: \({_T}, {_T}\) -> {_T}")
# "%name = f32[16,256,384]{2,1,0} op(" or "%name = (f32[4]{0}, s32[4]{0}) reduce("
_INSTR = re.compile(r"^\s*(?:ROOT )?%\S+ = (\(.*?\)|\w+\[[\d,]*\](?:\{[^}]*\})?) ([\w-]+)\(")
_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")


def _elements(dims: str) -> int:
    return math.prod(int(d) for d in dims.split(",") if d)


def stats(lowered, compiled, big: int = 1 << 16) -> dict[str, float]:
    """Counts in ``lowered`` and ``compiled`` (``jax.stages``); see the module docstring."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    out = collections.Counter()
    out["bytes_accessed_mb"] = round(float(cost.get("bytes accessed", 0.0)) / 2**20, 1)
    for line in compiled.as_text().splitlines():
        m = _INSTR.match(line)
        if m is None:
            continue
        shape, op = m.groups()
        arrays = _ARRAY.findall(shape)
        size = max((_elements(d) for _, d in arrays), default=0)
        if op == "select" and size >= big:
            out["select_big"] += 1
        elif op == "is-finite" and size >= big:
            out["isfinite_big"] += 1
        elif op == "reduce" and shape.startswith("(") and any(t == "s32" for t, _ in arrays):
            out["argmax_reduce"] += 1
        elif op == "while":
            out["while"] += 1
    for op, (_, a), (_, b), result in matmuls(lowered.as_text()):
        out[f"{op}_{a},{b}->{result}"] += 1
    out["loop_dots_big"] = loop_dots(compiled.as_text(), big)
    return dict(out)


def matmuls(text: str) -> list[tuple[str, tuple[int, str], tuple[int, str], str]]:
    """The dots and convolutions of a lowered (StableHLO) program, in order: ``(op, (rank,
    dtype) of each operand, result dtype)``, ``op`` being ``dot`` or ``conv``."""
    return [
        ("dot" if op == "dot_general" else "conv", (a.count("x"), ta), (b.count("x"), tb), tr)
        for op, a, ta, b, tb, _, tr in _MATMUL.findall(text)
    ]


def loop_dots(text: str, big: int) -> int:
    """Dots inside while-loop bodies (and what they call) whose result has at least ``big``
    elements: a weight-sized gradient computed on every iteration of a scan."""
    comps, name = {}, None
    for line in text.splitlines():
        if m := re.match(r"^(?:ENTRY )?%([\w.\-]+) ", line):
            name = m.group(1)
            comps[name] = []
        elif name is not None:
            comps[name].append(line)
    todo = [
        b for lines in comps.values() for ln in lines for b in re.findall(r"body=%([\w.\-]+)", ln)
    ]
    seen = set()
    while todo:
        c = todo.pop()
        if c in seen or c not in comps:
            continue
        seen.add(c)
        for ln in comps[c]:
            todo += re.findall(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", ln)
    count = 0
    for c in seen:
        for ln in comps[c]:
            m = _INSTR.match(ln)
            if m and m.group(2) == "dot":
                count += (
                    max((_elements(d) for _, d in _ARRAY.findall(m.group(1))), default=0) >= big
                )
    return count


def line(name: str, s: dict) -> str:
    """``name: key=value ...`` in a fixed order (missing counts are 0)."""
    keys = ["bytes_accessed_mb", "select_big", "isfinite_big", "argmax_reduce", "while"]
    keys += ["loop_dots_big"]
    keys += sorted(k for k in s if k.startswith(("dot_", "conv_")))
    return f"{name}: " + " ".join(f"{k}={s.get(k, 0)}" for k in keys)
