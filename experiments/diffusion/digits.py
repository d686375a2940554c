"""EDM diffusion on scikit-learn's 8x8 digits (class-conditional UNet, Heun sampler).

jaxmodels train --config experiments/diffusion/digits.py --workdir runs/diffusion-digits
jaxmodels sample --config experiments/diffusion/digits.py --workdir runs/diffusion-digits
jaxmodels train --config experiments/diffusion/digits.py:smoke --workdir /tmp/diffusion-smoke

``:likelihood`` trains the unconditional model on dequantised digits and reports the PF-ODE
bits/dim of every held-out digit at the end (the likelihood table of docs/flows.md):
jaxmodels train --config experiments/diffusion/digits.py:likelihood --workdir runs/diffusion-bpd-edm

``:bf16`` computes in bfloat16 with float32 parameters (the GPU suite's timing of the UNet, where
its attention then reaches cuDNN); combine with the others, e.g. ``:bf16,smoke``.

Other processes: --config.model.variant=vp|ve|iddpm|flow (EDM Table 1); other samplers:
--config.sample.sampler=euler|dpmpp_2m|edm_stochastic|euler_ancestral|ddim|ddpm|rk45|...
"""

from jaxmodels.config import base_config, config_args
from jaxmodels.data.image_data import data_config


def get_config(arg: str | None = None):
    args = config_args(arg, ("smoke", "likelihood", "bf16"))
    c = base_config()
    c.family = "diffusion"

    m = c.model
    m.variant = "edm"  # the process: edm | vp | ve | iddpm | flow (models/diffusion/processes.py)
    m.sigma_data = 0.5  # EDM's data std (Table 1); digits in [-1, 1] have std ~0.8
    m.arch = "unet"  # unet (images) | mlp (2-D points)
    m.width = 32  # UNet base channels (sized for a 2-core CPU run)
    # widths per level (x width) and the sides that get self-attention; () fits them to the
    # images (jaxmodels.layers.unet.fit_levels): 8x8 digits (1, 2) and (4,), i.e. 32 channels
    # at 8x8 and 64 at 4x4 with attention; 28x28 (1, 2, 2) and (14, 7); 32x32 (1, 2, 2, 2) and
    # (16, 4). Set them to override; (0,) for no attention.
    m.channel_mult = ()
    m.attn_resolutions = ()
    m.depth = 1  # residual blocks per resolution
    m.num_heads = 2  # attention heads
    m.dropout_rate = 0.1  # dropout in residual blocks (EDM uses 0.10-0.13 on CIFAR-10)
    m.embedding = "positional"  # noise embedding: positional | fourier
    m.class_conditional = True  # condition on the digit label (with a null label for CFG)
    m.label_dropout = 0.1  # prob. of training with the null label (Ho & Salimans 2022)

    # name, path, image_size (digits: >8 upsamples nearest), channels, holdout, split_seed, toy,
    # num_points: the keys every image family shares (jaxmodels.data.image_data.data_config)
    d = c.data = data_config()
    d.dequantize = False  # train on level + U[0, 1) (as the flows do), for a comparable bits/dim

    s = c.sample
    s.sampler = "heun"  # any name in jaxmodels.samplers.SAMPLERS
    s.steps = 18  # sampling steps (Heun: 2 * steps - 1 network evaluations)
    s.schedule = "karras"  # karras | process (the process's Table 1 steps) | vp | ve | ...
    s.sigma_min = 0.002  # EDM Table 1 (karras schedule)
    s.sigma_max = 80.0  # EDM Table 1 (karras schedule)
    s.rho = 7.0  # EDM eq. 5 (karras schedule)
    s.S_churn = 0.0  # EDM Algorithm 2 stochasticity (heun/euler); 0 = deterministic
    s.S_tmin = 0.0  # churn only for sigma in [S_tmin, S_tmax]
    s.S_tmax = float("inf")
    s.S_noise = 1.0  # noise inflation for churn
    s.eta = 1.0  # ancestral noise fraction (euler_ancestral, ddim)
    s.guidance_scale = 1.0  # classifier-free guidance weight (1 = plain conditional)
    s.num = 100  # samples in the PNG grid (labels 0..9 repeating)
    s.eval_num = 500  # samples per quality evaluation (config.evals "quality", "reflow")
    s.likelihood_num = 0  # held-out images the "likelihood" evaluator solves; 0: all of them
    s.likelihood_batch = 128  # images per PF-ODE solve
    s.likelihood_probes = 1  # Hutchinson probes per image; 0: exact divergence (D JVPs)
    s.likelihood_sigma_min = 1e-3  # the ODE starts here (well below a bin's width, 2/17)
    s.likelihood_rtol = 1e-5  # RK45 relative and absolute tolerance

    t = c.train
    t.steps = 3000
    t.batch_size = 64
    t.learning_rate = 1e-3
    t.warmup_steps = 200
    t.weight_decay = 0.0
    t.b2 = 0.999
    t.ema_halflife_examples = (
        20_000  # EMA half-life in examples (EDM: 500k of 200M); sampling uses it
    )
    t.log_every = 100
    t.eval_every = 1000
    t.eval_batches = 0  # the whole held-out split
    t.checkpoint_every = 1000
    # activations/matmuls (params stay float32): float32 on CPU; bfloat16 (:bf16) on GPU/TPU
    t.compute_dtype = "bfloat16" if "bf16" in args else "float32"

    c.evals = ("quality",)  # run on the eval schedule; offered: quality, likelihood, reflow

    if "likelihood" in args:
        m.class_conditional = False  # p(x), as the flows model it
        d.dequantize = True
        c.evals = ("quality", "likelihood")  # every held-out digit's bits/dim, at the end
        t.eval_every = t.steps  # one evaluation (with the PF-ODE solves), at the end
        t.sample_at_end = False  # `jaxmodels sample` draws the grid (and solves again) on demand
    if "smoke" in args:
        m.width = 16
        m.channel_mult = (1,)  # one resolution: the smallest graph to compile
        m.attn_resolutions = (8,)
        m.num_heads = 1
        s.steps = 4
        s.num = 40  # = eval_num: one compiled sampler serves both
        s.eval_num = 40
        t.steps = 4
        t.batch_size = 16
        t.warmup_steps = 2
        t.ema_halflife_examples = 500
        t.log_every = 2
        t.eval_every = 4  # one evaluation, at the end
        t.eval_batches = 2
        t.checkpoint_every = 4
    return c
