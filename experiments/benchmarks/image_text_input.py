"""Benchmark: images/s of the webdataset input pipeline (decode, random-resized crop, tokenise).

Writes JPEG shards (or reads yours with --urls), then times the training stream of
``jaxmodels.data.image_text_sources`` at 224 px for each worker-process count and prints a table:

  python experiments/benchmarks/image_text_input.py                      # synthetic shards
  python experiments/benchmarks/image_text_input.py --workers 0,2,4 --source-size 640x480
  python experiments/benchmarks/image_text_input.py --urls '/data/cc3m/{00000..00010}.tar'

It first prints the CPU time one record costs on one core (read, decode, crop, tokenise), then
the wall-clock images/s of the whole stream. Workers 0 decodes on grain's read threads inside
this process (Pillow releases the GIL while decoding and resizing); N > 0 starts N grain worker
processes. Compare the numbers with the training step's images/s
(experiments/benchmarks/contrastive_loss.py --mode gpu) to see whether the input keeps up. A
script that prints a table, not a timed test.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--urls", default="", help="existing shards (brace pattern); default: synthetic")
    p.add_argument("--records", type=int, default=2048, help="synthetic records")
    p.add_argument("--shard-size", type=int, default=256, help="synthetic records per shard")
    p.add_argument("--source-size", default="512x384", help="synthetic JPEG width x height")
    p.add_argument("--image-size", type=int, default=224, help="crop side in pixels")
    p.add_argument("--crop-scale", default="0.9,1.0", help="random-resized-crop area range")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--batches", type=int, default=20, help="timed batches after 3 warm-up ones")
    p.add_argument("--workers", default="0,2", help="grain worker-process counts to time")
    return p.parse_args(argv)


def synthetic_image(rng, width: int, height: int) -> bytes:
    """A JPEG (quality 90) with photo-like structure: a smooth random field plus fine noise."""
    import numpy as np
    from PIL import Image

    coarse = rng.integers(0, 255, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 12, smooth.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_shards(folder: str, args) -> str:
    """Synthetic shards in ``folder``; returns their brace pattern."""
    import numpy as np

    from jaxmodels.data import webdataset

    width, height = (int(v) for v in args.source_size.split("x"))
    rng = np.random.default_rng(0)
    n_shards = -(-args.records // args.shard_size)
    for s in range(n_shards):
        count = min(args.shard_size, args.records - s * args.shard_size)
        records = [
            (f"{s:05d}{r:05d}", {"jpg": synthetic_image(rng, width, height), "txt": b"a photo"})
            for r in range(count)
        ]
        webdataset.write_shard(os.path.join(folder, f"{s:05d}.tar"), records)
    return f"{folder}/{{00000..{n_shards - 1:05d}}}.tar"


def config(urls: str, args, workers: int):
    import ml_collections

    from jaxmodels.data import image_text_sources

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.train = ml_collections.ConfigDict({"batch_size": args.batch})
    c.data = d = ml_collections.ConfigDict({"name": "webdataset", "image_size": args.image_size})
    image_text_sources.add_config(d, tuple(float(v) for v in args.crop_scale.split(",")))
    d.urls, d.worker_count = urls, workers
    return c


def encode(caption: str) -> dict:
    """The contrastive family's byte ids and length (64 bytes)."""
    from jaxmodels.data.tokenizers import ByteTokenizer

    ids, lengths = ByteTokenizer().encode_batch([caption], 64)
    return {"text": ids[0], "text_len": lengths[0]}


def time_stream(urls: str, args, workers: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s over the timed batches)."""
    from jaxmodels.data import image_text_sources

    start = time.perf_counter()
    it = image_text_sources.iterator_fn(config(urls, args, workers), "train", encode)(0, 1)
    for _ in range(3):
        batch = next(it)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(it)
    seconds = time.perf_counter() - start
    assert batch["image"].shape == (args.batch, args.image_size, args.image_size, 3)
    if hasattr(it, "close"):
        it.close()
    return first, args.batches * args.batch / seconds


def cpu_ms_per_image(urls: str, args, n: int = 256) -> float:
    """CPU milliseconds (process time, one thread) to read, decode, crop and tokenise one
    record: a per-core cost that a loaded machine changes far less than it changes wall time."""
    import numpy as np

    from jaxmodels.data import image_text_sources as S

    c = config(urls, args, 0)
    records = S.Records(S.open_source(c.data, "train")[0], "random", S.Skips(False))
    transform = S.PairTransform(encode, args.image_size, c.data.crop_scale, records.skips)
    rng, n = np.random.default_rng(0), min(n, len(records))
    start = time.process_time()
    for i in range(n):
        transform(records[i], rng)
    return (time.process_time() - start) / n * 1e3


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        urls = args.urls or write_shards(folder, args)
        from jaxmodels.data import webdataset

        start = time.perf_counter()
        n = len(webdataset.WebDatasetSource(webdataset.expand_urls(urls)))
        index_s = time.perf_counter() - start
        print(f"{n} records, tar index built in {index_s:.2f} s; {os.cpu_count()} CPUs")
        ms = cpu_ms_per_image(urls, args)
        print(f"one core: {ms:.1f} CPU-ms per image = {1e3 / ms:.0f} images/s per core")
        print(f"{'workers':>8} {'first batch s':>14} {'images/s':>10}")
        for workers in (int(w) for w in args.workers.split(",")):
            first, rate = time_stream(urls, args, workers)
            print(f"{workers:>8} {first:>14.1f} {rate:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
