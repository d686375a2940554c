"""CapFilt on a trained BLIP: caption every training image, filter by ITM, write the new set.

python experiments/blip/capfilt.py --workdir runs/blip-noisy
python experiments/blip/capfilt.py --workdir runs/blip-noisy --threshold 0.5 \
    --config experiments/blip/pretrain.py:noisy

Writes ``<workdir>/capfilt.npz`` (images and captions; train on it with
``--config.data.name=file --config.data.path=<workdir>/capfilt.npz``) and
``<workdir>/capfilt.json`` (the share of corrupted pairs removed and of clean pairs kept,
known because the noisy set is made by ``jaxmodels.models.blip.data.corrupt``).
"""

import argparse
import json
import os

import jax
import numpy as np

from jaxmodels.config import load_config
from jaxmodels.models.blip import capfilt, data
from jaxmodels.models.blip.evaluators import Scorer
from jaxmodels.models.blip.sample import Captioner
from jaxmodels.models.blip.task import make_model, train_pairs
from jaxmodels.models.blip.tokens import make_layout
from jaxmodels.train import loop


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="training run holding the checkpoint")
    p.add_argument("--config", default="experiments/blip/pretrain.py:noisy", help="FILE[:ARG]")
    p.add_argument("--threshold", type=float, default=0.5, help="ITM match probability to keep")
    p.add_argument("--out", default="", help="output .npz (default <workdir>/capfilt.npz)")
    args = p.parse_args(argv)

    config = load_config(args.config)
    run = loop.build(config, args.workdir, read_only=True)  # reads the checkpoint only
    state, step = run.checkpointer.restore(run.abstract_state)
    if state is None:
        raise SystemExit(f"no checkpoint under {args.workdir}; train first")
    params = loop.inference_params(state)
    layout = make_layout(config.data)
    model = make_model(config, layout)
    images, captions = train_pairs(config)
    with jax.set_mesh(run.mesh):
        result = capfilt.capfilt(
            Captioner(model, layout, config.mesh.rules),
            Scorer(model, layout, config.mesh.rules, config.data.eval_batch_size, run.mesh),
            params,
            images,
            captions,
            jax.random.key(config.seed),
            threshold=args.threshold,
        )
    out = args.out or os.path.join(args.workdir, "capfilt.npz")
    new_images, new_captions = result.dataset(images, captions)
    data.save_pairs(out, new_images, new_captions)
    d = config.data
    clean = data.split("train", d.train_size, d.image_size, d.split_seed, d.object_scale)
    corrupted = np.asarray([a != b for a, b in zip(captions, clean[1], strict=True)])
    report = {
        "step": int(step),
        "threshold": args.threshold,
        "pairs_in": len(captions),
        "corrupted_in": int(corrupted.sum()),
        "pairs_out": len(new_captions),
        **capfilt.noise_report(result, corrupted),
        "synthetic_correct": float(
            np.mean([s == c for s, c in zip(result.synthetic, clean[1], strict=True)])
        ),
    }
    with open(os.path.join(args.workdir, "capfilt.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
