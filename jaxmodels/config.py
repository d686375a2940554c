"""The keys every experiment config shares; families add theirs under ``model``/``data``.

Experiment files (``experiments/<family>/*.py``) start from :func:`base_config`, check their
``arg`` with :func:`config_args` and override. :func:`load_config` loads one by file name, as the
CLI's ``--config FILE[:ARG]`` does.

One vocabulary: a thing every family's config names is named by one word everywhere, the word
in :data:`GLOSSARY` (model width is ``width`` whether it is a transformer's d_model, a UNet's base
channels or a recurrent cell's hidden size; a tower nested under ``model.image`` uses the same
words). :data:`OLD_KEYS` lists, per family, the names configs used before, so that a run saved
under them still resumes (:func:`current_names` renames a saved ``config.json`` before it is
compared) and an old name on the command line fails naming its new one (:func:`renamed`).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import pathlib
import re
from collections.abc import Iterable, Mapping

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
    ("qkv", None),  # a fused q/k/v kernel's [queries..., key, value] axis (per kv head)
    ("gate_up", None),  # a fused gate/up kernel's [gate, up] axis
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
    # Check every step (jaxmodels.train.debug): the batch has the first batch's shapes and dtypes;
    # batch, loss, metrics and gradients are finite, else stop naming the step and the leaf.
    # Slower (each step waits for its check); off, the step compiles to the same program.
    t.debug_checks = False

    # Start a fresh run (step 0) from another run's parameters; a resumed run keeps its own.
    # That run's folder is only read: never its lock, never a write (jaxmodels.train.warmstart).
    # Families that import Hugging Face checkpoints add init.hf (lm, roformer, contrastive, blip);
    # one or the other.
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


# The config vocabulary: canonical key -> what it means (and which family keys it replaced). A
# key under model applies at any depth (model.image.width, model.text.depth: the same words).
GLOSSARY = {
    "model.variant": (
        "which system of the family, its main switch: contrastive siglip | clip (the loss: sigmoid "
        "| softmax; the config file sets the rest of the recipe); diffusion edm | vp | ve | iddpm "
        "| flow (the process, EDM Table 1); flows nice | realnvp | glow; online_action trn | idn "
        "| gru | lstm | mlp. A family of one system (lm, roformer, blip, mlp) has none. Other "
        "axes keep their own names: diffusion's network model.arch (unet | mlp), lm's "
        "model.attention and model.position.name. Was: model.loss, model.process, model.flow, "
        "model.name"
    ),
    "model.preset": (
        "a named size from the paper's table setting width, depth, mlp_dim and num_heads (a ViT "
        "also patch_size): roformer tiny | small | base, ViT Ti/16, B/16, So400m/14; '' keeps the "
        "explicit sizes. Was: model.variant (roformer), model.image.variant (contrastive)"
    ),
    "model.width": (
        "the network's width: a transformer's d_model, a UNet's base channels, the hidden units "
        "of an MLP, a flow conditioner's units or channels (flows: 0 sizes it from the input), a "
        "recurrent cell's hidden size. Was: "
        "model.d_model (lm, roformer), model.channels (diffusion), model.hidden (mlp, flows), "
        "model.hidden_size (online_action)"
    ),
    "model.depth": (
        "how many blocks the network stacks in series: a transformer's layers, an MLP's hidden "
        "layers, a UNet's residual blocks per resolution, the residual blocks of diffusion's "
        "point MLP, a flow conditioner's hidden layers (NICE) or residual blocks (RealNVP, Glow; "
        "the flow's own count of couplings is model.num_couplings). Was: model.num_layers (lm, "
        "roformer, mlp), model.num_blocks (diffusion)"
    ),
    "model.mlp_dim": "hidden width of a transformer block's MLP. Was: model.d_ff (lm, roformer)",
    "model.num_heads": "attention (query) heads",
    "model.dropout_rate": (
        "dropout probability in training. Was: model.dropout (mlp, diffusion, online_action)"
    ),
    "model.embed_dim": (
        "width of an embedding the model projects into: the joint image-text space (contrastive, "
        "blip), a GRU detector's input embedding. Was: model.embed_size (online_action)"
    ),
    "data.name": (
        "which data source: an embedded one (digits, toy2d, embedded, scenes, synthetic, sensor) "
        "or a kind of files (webdataset, csv, tfds, files). Was: data.source (online_action)"
    ),
    "data.holdout": (
        "fraction of the examples held out for evaluation (the rest train). Was: "
        "data.validation_fraction (lm, roformer)"
    ),
    "data.split_seed": (
        "seeds what is random in the splits: which rows are held out, and the examples an "
        "embedded source generates for each split. Was: data.seed (contrastive, blip)"
    ),
    "data.train_size": (
        "examples an embedded source generates for training (online_action: videos). Was: "
        "data.shapes_train (contrastive), data.num_train_videos (online_action)"
    ),
    "data.eval_size": (
        "examples an embedded source generates for evaluation (online_action: videos). Was: "
        "data.shapes_eval (contrastive), data.num_eval_videos (online_action)"
    ),
    "data.eval_batch_size": (
        "examples per evaluation batch (online_action: whole videos). Was: "
        "data.eval_batch_videos (online_action)"
    ),
    "data.train_split": (
        "the named split (TFDS, a split file) to train on. Was: data.tfds_split (lm, roformer)"
    ),
    "data.eval_split": (
        "the named split (TFDS, a split file) to evaluate on. Was: data.tfds_eval_split (lm, "
        "roformer)"
    ),
    "data.tfds_data_dir": (
        "TFDS's data_dir ('' = TFDS's default). Was: data.tfds_dir (contrastive, blip)"
    ),
    "sample.num": (
        "how many samples `jaxmodels sample` draws (lm: per prompt). Was: sample.num_samples "
        "(lm), sample.n (blip)"
    ),
}

# Per family, each old key -> its canonical name (GLOSSARY). Per family because one old word meant
# different things: model.variant was roformer's size preset but is now every family's switch.
_TEXT_TRANSFORMER_KEYS = {  # lm and roformer share their model sizes and text data (data/text.py)
    "model.d_model": "model.width",
    "model.num_layers": "model.depth",
    "model.d_ff": "model.mlp_dim",
    "data.validation_fraction": "data.holdout",
    "data.tfds_split": "data.train_split",
    "data.tfds_eval_split": "data.eval_split",
}
OLD_KEYS = {
    "lm": {**_TEXT_TRANSFORMER_KEYS, "sample.num_samples": "sample.num"},
    "roformer": {"model.variant": "model.preset", **_TEXT_TRANSFORMER_KEYS},
    "contrastive": {
        "model.loss": "model.variant",
        "model.image.variant": "model.image.preset",
        "data.seed": "data.split_seed",
        "data.shapes_train": "data.train_size",
        "data.shapes_eval": "data.eval_size",
        "data.tfds_dir": "data.tfds_data_dir",
    },
    "blip": {
        "data.seed": "data.split_seed",
        "data.tfds_dir": "data.tfds_data_dir",
        "sample.n": "sample.num",
    },
    "diffusion": {
        "model.process": "model.variant",
        "model.channels": "model.width",
        "model.num_blocks": "model.depth",
        "model.dropout": "model.dropout_rate",
    },
    "flows": {
        "model.flow": "model.variant",
        "model.hidden": "model.width",
    },
    "mlp": {
        "model.hidden": "model.width",
        "model.num_layers": "model.depth",
        "model.dropout": "model.dropout_rate",
    },
    "online_action": {
        "model.name": "model.variant",
        "model.hidden_size": "model.width",
        "model.dropout": "model.dropout_rate",
        "model.embed_size": "model.embed_dim",
        "data.source": "data.name",
        "data.num_train_videos": "data.train_size",
        "data.num_eval_videos": "data.eval_size",
        "data.eval_batch_videos": "data.eval_batch_size",
    },
}
# Values an old key took that its new name spells otherwise: (family, new key) -> {old: new}.
OLD_VALUES = {
    ("contrastive", "model.variant"): {"sigmoid": "siglip", "softmax": "clip"},
}
# Old keys a saved config held unused, beside their new name: (family, old key) -> the saved
# (key, value) under which it was unused. A diffusion run with the point MLP (toy2d.py starts from
# digits.py) saved the UNet's channels and num_blocks beside the MLP's own width and depth.
UNUSED_OLD_KEYS = {
    ("diffusion", "model.channels"): ("model.arch", "mlp"),
    ("diffusion", "model.num_blocks"): ("model.arch", "mlp"),
}


def _leaf(tree: Mapping, key: str):
    """``tree``'s value at the dotted ``key`` (``None`` when absent)."""
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, Mapping) else None
    return tree


def renamed(family: str, key: str) -> str | None:
    """The canonical name of ``key`` (``"model.d_model"``, no ``config.``) if ``family``'s configs
    used to call it that, else ``None``."""
    return OLD_KEYS.get(family, {}).get(key)


def current_names(saved: Mapping) -> dict:
    """A copy of a saved config (``config.json``'s nested dict) with its family's old keys renamed
    and their old values respelled (:data:`OLD_KEYS`, :data:`OLD_VALUES`), so that a run saved
    before a rename compares equal to the same config written today.

    An old key the run held unused (:data:`UNUSED_OLD_KEYS`) is dropped. Any other saved config
    that holds both an old key and its new name keeps both (the comparison then names the
    difference rather than guessing which one the run used).
    """
    out = copy.deepcopy(dict(saved))
    family = out.get("family", "")
    for old, new in OLD_KEYS.get(family, {}).items():
        *path, leaf = old.split(".")
        node = _leaf(out, ".".join(path)) if path else out
        *new_path, new_leaf = new.split(".")
        if not isinstance(node, dict) or leaf not in node or new_path != path:
            continue
        unused = UNUSED_OLD_KEYS.get((family, old))
        if unused is not None and _leaf(out, unused[0]) == unused[1]:
            del node[leaf]
            continue
        if new_leaf in node:
            continue
        value = node.pop(leaf)
        if isinstance(value, str):
            value = OLD_VALUES.get((family, new), {}).get(value, value)
        node[new_leaf] = value
    return out


_POSITIVE = ("steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints")
# Model sizes every family names alike: wherever one of these keys appears under config.model
# (nested dicts such as model.image too), it must be a positive integer. A family key that may
# be 0 or negative takes another name (lm's num_kv_heads = 0 means "as many as num_heads").
MODEL_SIZES = (
    "width",
    "depth",
    "mlp_dim",
    "num_heads",
    "embed_dim",
    "patch_size",
    "num_couplings",
    "num_levels",
    "steps_per_level",
)
# Sizes a family allows at 0: family -> keys of config.model that may be 0 (any other value is
# positive). Flows derive width and num_levels from the input when left 0 (models/flows/model.py,
# ``sized``); their depth 0 is a conditioner without residual blocks.
MAY_BE_ZERO = {"flows": ("width", "num_levels", "depth")}
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
    derived = MAY_BE_ZERO.get(config.get("family"), ())
    sizes = [k for k in MODEL_SIZES if k not in derived or config.model.get(k) != 0]
    check_positive(config.model, sizes, "config.model")
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


def saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved (``DIR/config.json``, local or ``gs://``), keys as saved.

    JSON lists come back as tuples (what config files write). What ``jaxmodels eval|sample|
    export --workdir DIR`` and ``jaxmodels.load(DIR)`` use when no ``--config`` is given. A run
    saved before a rename of :data:`OLD_KEYS` comes back in today's names (:func:`current_names`),
    the ones the family's code reads.
    """
    import json

    from etils import epath

    file = epath.Path(workdir) / "config.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"--workdir {workdir!r} has no config.json (not a trained run?); pass --config FILE"
        )
    try:
        saved = json.loads(file.read_text())
    except ValueError as e:
        raise ValueError(f"{file} is not a JSON config ({e}); pass --config FILE") from e

    def tuples(x):
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    return ml_collections.ConfigDict(tuples(current_names(saved)))


def get_config(workdir: str) -> ml_collections.ConfigDict:
    """``--config jaxmodels/config.py:DIR`` is the run's own config (:func:`saved_config`);
    the CLI passes it for ``eval``, ``sample`` and ``export`` when ``--config`` is left out."""
    return saved_config(workdir)
