"""``jaxmodels sample`` for the LM family: prompts continued with the KV cache."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.samplers.decode import generate


def make_sampler(model, tokenizer, s):
    """Returns ``(params, rng, workdir) -> text`` decoding ``s = config.sample``'s prompts."""
    dec = model.clone(decode=True)

    def apply_fn(params, cache, tokens):
        logits, upd = dec.apply({"params": params, "cache": cache}, tokens, mutable=["cache"])
        return logits, upd["cache"]

    def continue_prompt(params, rng, prompt: str) -> np.ndarray:
        ids = np.concatenate([[tokenizer.bos_id], tokenizer.encode(prompt)]).astype(np.int32)
        prompt_BxL = jnp.asarray(np.tile(ids, (s.num, 1)))
        total = prompt_BxL.shape[1] + s.max_new_tokens
        shape = jax.ShapeDtypeStruct((s.num, total), jnp.int32)
        cache = jax.tree.map(
            lambda a: jnp.zeros(a.shape, a.dtype),
            jax.eval_shape(dec.init, jax.random.key(0), shape)["cache"],
        )
        return np.asarray(
            generate(apply_fn, params, nn.unbox(cache), prompt_BxL, rng,
                     max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                     top_p=s.top_p, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
        )  # fmt: skip

    def sample(params, rng, workdir: str) -> str:
        prompts = [s.prompts] if isinstance(s.prompts, str) else list(s.prompts)
        outputs = []
        for prompt in prompts:
            rng, key = jax.random.split(rng)
            for row in continue_prompt(params, key, prompt):
                outputs.append(f"--- prompt {prompt!r}\n{prompt}{tokenizer.decode(row)}")
        text = "\n".join(outputs)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "samples.txt"), "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    return sample
