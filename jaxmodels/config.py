"""The keys every experiment config shares; families add theirs under ``model``/``data``.

Experiment files (``experiments/<family>/*.py``) start from :func:`base_config`, check their
``arg`` with :func:`config_args` and override. :func:`load_config` loads one by file name, as the
CLI's ``--config FILE[:ARG]`` does.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import re
from collections.abc import Iterable

import ml_collections

# Logical axis names used by every layer, and the mesh axes they map to. With the default mesh
# shape (data=-1) this is pure data parallelism; raising ``fsdp`` shards parameters and
# optimizer state along ``embed``; raising ``tensor`` shards heads/MLP/vocab (Megatron style).
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("layers", None),
    ("channels", None),
    ("classes", None),
)


def base_config() -> ml_collections.ConfigDict:
    """Returns the shared trainer/mesh keys with their defaults."""
    c = ml_collections.ConfigDict()
    c.family = ""  # family name: the folder jaxmodels/models/<family>/ (see jaxmodels.registry)
    c.seed = 0  # seeds parameters, data order and per-step rngs

    c.model = ml_collections.ConfigDict()  # family-specific
    c.data = ml_collections.ConfigDict()  # family-specific
    c.sample = ml_collections.ConfigDict()  # family-specific options for `jaxmodels sample`
    # Evaluators Task.evaluate runs on the eval schedule and in `jaxmodels eval`, by name: the
    # family's config lists its defaults and the names it offers (jaxmodels.evaluate.select).
    # --config.evals=a,b picks others (also on a saved run); --config.evals= runs none.
    c.evals = ()

    t = c.train = ml_collections.ConfigDict()
    t.steps = 1000  # optimizer steps
    t.batch_size = 32  # global batch (examples per optimizer step, all hosts together)
    t.grad_accum = 1  # micro-batches per step; batch_size must divide by it
    t.optimizer = "adamw"  # adamw | adam | sgd | lion
    t.learning_rate = 3e-4  # peak learning rate
    t.schedule = "cosine"  # cosine | linear | constant (all after linear warm-up)
    t.warmup_steps = 100  # linear warm-up from 0
    t.min_lr_ratio = 0.1  # final learning rate as a fraction of the peak (cosine/linear)
    t.b1 = 0.9  # Adam beta1 / SGD momentum
    t.b2 = 0.95  # Adam beta2
    t.eps = 1e-8  # Adam epsilon
    t.weight_decay = 0.1  # decoupled (AdamW/Lion, matrices only); adam: L2 on all, as torch
    t.grad_clip = 1.0  # global-norm clipping; 0 disables
    t.lr_multipliers = ""  # per-parameter learning-rate factors by name, e.g. "t_prime=10,b=10"
    t.ema_halflife_examples = 0.0  # EMA of params with this half-life in examples; 0 disables
    t.compute_dtype = "float32"  # activations/matmuls: float32 | bfloat16 (params stay float32)
    t.param_dtype = "float32"  # stored parameters (and so gradients): float32 | bfloat16
    t.opt_state_dtype = "float32"  # stored optimizer moments: float32 | bfloat16
    t.log_every = 10  # steps between metrics lines
    t.eval_every = 200  # steps between evaluations (and at the end); 0 disables
    t.eval_batches = 20  # eval batches per evaluation; 0 means the whole eval set
    t.checkpoint_every = 500  # steps between checkpoints (and at the end); 0 disables
    t.keep_checkpoints = 3  # checkpoints kept on disk
    t.sample_at_end = True  # after training, run the family's sampler (if any) and print it

    # Start a fresh run (step 0) from another run's parameters; a resumed run keeps its own.
    # That run's folder is only read: never its lock, never a write (jaxmodels.train.warmstart).
    # Families that import Hugging Face checkpoints add init.hf (lm, roformer); one or the other.
    i = c.init = ml_collections.ConfigDict()
    i.workdir = ""  # that run's workdir (its newest checkpoint) or one: DIR/checkpoints/STEP
    i.workdir_params = "auto"  # auto (its EMA when it kept one, else params) | ema | params
    i.workdir_map = ""  # "here=there,...": only these sub-trees, e.g. "visual=img"; "": all

    m = c.mesh = ml_collections.ConfigDict()
    m.data = -1  # data-parallel axis size; -1 takes the devices left over
    m.fsdp = 1  # parameter/optimizer-state sharding axis size
    m.tensor = 1  # tensor-parallel axis size
    # Multislice / multi-node: each axis above is per slice, times these across slices (DCN).
    m.dcn_data = 1  # data parallelism across slices: set to the number of slices
    m.dcn_fsdp = 1  # parameter sharding across slices (rarely worth the slow network)
    m.dcn_tensor = 1  # tensor parallelism across slices (almost never)
    m.rules = DEFAULT_RULES  # logical axis name -> mesh axes
    return c


_POSITIVE = ("steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints")
# Model sizes every family names alike: wherever one of these keys appears under config.model
# (nested dicts such as model.image too), it must be a positive integer. A family key that may
# be 0 or negative takes another name (lm's num_kv_heads = 0 means "as many as num_heads").
MODEL_SIZES = (
    "hidden",
    "hidden_size",
    "d_model",
    "d_ff",
    "num_layers",
    "num_heads",
    "channels",
    "width",
    "embed_dim",
    "embed_size",
    "mlp_dim",
    "patch_size",
    "num_blocks",
    "num_couplings",
    "num_levels",
    "steps_per_level",
)
_NON_NEGATIVE = (
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "ema_halflife_examples",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
)
_CHOICES = {
    "optimizer": ("adamw", "adam", "lion", "sgd"),
    "schedule": ("cosine", "linear", "constant"),
    "compute_dtype": ("float32", "bfloat16", "float16"),
    "param_dtype": ("float32", "bfloat16"),
    "opt_state_dtype": ("float32", "bfloat16"),
}


def validate(config: ml_collections.ConfigDict) -> None:
    """Fails fast, naming the key, on shared values the trainer cannot use.

    The family name is checked by ``jaxmodels.registry.family_module`` (the registry sits above
    the families, this module below them).
    """
    t = config.train
    check_positive(t, _POSITIVE, "config.train")
    check_positive(config.model, MODEL_SIZES, "config.model")
    if not math.isfinite(t.learning_rate) or t.learning_rate <= 0:
        raise ValueError(f"config.train.learning_rate={t.learning_rate!r} must be finite and > 0")
    for key in _NON_NEGATIVE:
        if t[key] < 0:
            raise ValueError(f"config.train.{key}={t[key]!r} must be >= 0")
    for key, allowed in _CHOICES.items():
        if t[key] not in allowed:
            raise ValueError(f"config.train.{key}={t[key]!r}: choose one of {allowed}")
    if t.batch_size % t.grad_accum:
        raise ValueError(
            f"config.train.batch_size={t.batch_size} must be divisible by "
            f"config.train.grad_accum={t.grad_accum}"
        )
    if t.optimizer in ("adam", "adamw") and not 0 < t.eps < math.inf:
        raise ValueError(  # the train step's finite check relies on it (update_is_finite)
            f"config.train.eps={t.eps!r} must be finite and > 0 for {t.optimizer}: its step "
            "divides by sqrt(v) + eps, and v is 0 wherever the gradients have been 0"
        )
    if not 0 <= t.min_lr_ratio <= 1:
        raise ValueError(f"config.train.min_lr_ratio={t.min_lr_ratio!r} must be in [0, 1]")
    parse_lr_multipliers(t.get("lr_multipliers", ""))
    init = config.get("init") or {}
    if init.get("hf") and init.get("workdir"):
        raise ValueError(
            "config.init.hf and config.init.workdir are both set: a run starts from one of them"
        )
    use = init.get("workdir_params", "auto")
    if use not in WORKDIR_PARAMS:
        raise ValueError(f"config.init.workdir_params={use!r}: choose one of {WORKDIR_PARAMS}")
    parse_workdir_map(init.get("workdir_map", ""))


def parse_lr_multipliers(spec: str) -> dict[str, float]:
    """``"t_prime=10,b=10"`` -> ``{"t_prime": 10.0, "b": 10.0}`` (``config.train.lr_multipliers``).

    Each name is a regular expression matched against a parameter's whole ``/``-joined path
    (``towers/img/...``) or its last component; the first match gives the multiplier.
    """
    out = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = (x.strip() for x in item.partition("="))
        try:
            re.compile(name)
            multiplier = float(value)
        except (ValueError, re.error):
            multiplier = None
        if not (sep and name and multiplier is not None and multiplier >= 0):
            raise ValueError(
                f"config.train.lr_multipliers: cannot read {item!r}; write name=multiplier "
                "pairs with non-negative multipliers, e.g. 't_prime=10,b=10'"
            )
        out[name] = multiplier
    return out


WORKDIR_PARAMS = ("auto", "ema", "params")  # config.init.workdir_params


def within(path: str, prefix: str) -> bool:
    """Whether the ``/``-joined parameter ``path`` lies in the sub-tree ``prefix`` (``""``: the
    whole tree)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


def parse_workdir_map(spec: str) -> list[tuple[str, str]]:
    """``"visual=img,head=proj"`` -> ``[("visual", "img"), ("head", "proj")]``
    (``config.init.workdir_map``).

    Each pair names a sub-tree of this run's parameters and the sub-tree of the other run's
    that fills it (``/``-joined paths; an empty side is the whole tree: ``"=img"`` builds this
    run from that run's ``img``). This run's sub-trees may not overlap.
    """
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        here, sep, there = (x.strip().strip("/") for x in item.partition("="))
        if not sep:
            raise ValueError(
                f"config.init.workdir_map: cannot read {item!r}; write this_path=that_path "
                "pairs, e.g. 'visual=img'"
            )
        for other, _ in pairs:
            if within(here, other) or within(other, here):
                raise ValueError(
                    f"config.init.workdir_map: {here or '<all>'!r} and {other or '<all>'!r} "
                    "overlap; name each parameter of this run once"
                )
        pairs.append((here, there))
    return pairs


def check_positive(section, keys: Iterable[str], where: str) -> None:
    """Raises ``ValueError`` naming ``where.key`` at the first of ``keys`` in ``section``, or in a
    dict nested in it, whose value is not a positive integer."""
    for key, value in section.items():
        name = f"{where}.{key}"
        if hasattr(value, "items"):
            check_positive(value, keys, name)
        elif key in keys and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name}={value!r} must be a positive integer")


def config_args(arg: str | None, allowed: Iterable[str]) -> frozenset[str]:
    """Parses a config file's ``arg`` (``"smoke"``, ``"sensor,smoke"``, ...) into its parts.

    Every part must be one of ``allowed``; a typo such as ``:smok`` fails here, naming the
    allowed ones, instead of silently running the full config.
    """
    allowed = tuple(allowed)
    parts = frozenset(p.strip() for p in (arg or "").split(",") if p.strip())
    unknown = sorted(parts - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown config arg {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)} "
            "(comma-separated, or none)"
        )
    return parts


REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent  # a source checkout's root


def load_config(spec: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Loads ``FILE[:ARG]`` the way ``--config`` does: ``get_config(ARG)`` of the file.

    A relative ``FILE`` that is not found from the working directory is looked up from the
    repository root (so ``load_config("experiments/mlp/digits.py:smoke")`` works anywhere in a
    checkout).
    """
    path, _, arg = str(spec).partition(":")
    file = pathlib.Path(path)
    if not file.is_file() and not file.is_absolute() and (REPO_ROOT / file).is_file():
        file = REPO_ROOT / file
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"jaxmodels_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
