"""A ``gs://`` workdir end to end, against a local GCS emulator started here on 127.0.0.1.

The README's pod command runs through ``tpu_scripts/launch.sh`` on a fake worker (the fake
``gcloud`` of test_tpu_scripts runs the remote command locally), trains into
``gs://bkt/run``, is killed with SIGKILL, resumes and is evaluated. Everything the core writes
goes to the emulator: orbax/tensorstore checkpoints (``TENSORSTORE_GCS_HTTP_URL``), and
config.json, metrics.jsonl, the workdir lock and TensorBoard events (gcsfs and
google-cloud-storage, ``STORAGE_EMULATOR_HOST``).
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from http import HTTPStatus

import pytest
from test_tpu_scripts import BASE, FAKE_GCLOUD, ROOT, SCRIPTS

emulator = pytest.importorskip("gcp_storage_emulator.server")
pytest.importorskip("gcsfs")
objects = pytest.importorskip("gcp_storage_emulator.handlers.objects")

SMOKE = "experiments/mlp/digits.py:smoke"
STEPS = ["--config.train.steps=40", "--config.train.log_every=1", "--config.train.eval_every=0"]
STEPS += ["--config.train.checkpoint_every=10"]


def _with_generation_headers(download):
    """The emulator's media download, answering with the object's generation headers.

    Real GCS sends ``x-goog-generation`` and ``x-goog-metageneration`` on every media read;
    this emulator sends neither. tensorstore's GCS driver takes the read's generation from that
    header, and OCDBT then makes its next conditional manifest write against it, which failed
    now and then with "Malformed StorageGeneration" (the emulator also ignores
    ``ifGenerationNotMatch``, so the manifest is re-read in full with no header).
    """

    def download_with_generation(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            params = request.params
            obj = storage.get_file_obj(params["bucket_name"], params["object_id"])
            response["x-goog-generation"] = obj["generation"]
            response["x-goog-metageneration"] = obj["metageneration"]

    return download_with_generation


@pytest.fixture
def gcs(monkeypatch):
    """An in-memory GCS emulator with bucket ``bkt``; the environment points every client at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    original = objects.download
    download = _with_generation_headers(original)
    monkeypatch.setattr(objects, "download", download)  # objects.get(alt=media) calls it
    for _, handlers in emulator.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is original:
                monkeypatch.setitem(handlers, method, download)
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="bkt")
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url}
    env["TENSORSTORE_GCS_REQUEST_CONCURRENCY"] = "1"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env
    server.stop()


def _gs(path):
    from etils import epath

    return epath.Path(f"gs://bkt/{path}")


def _wait_for(predicate, timeout=600.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError


def _fake_worker(tmp_path):
    """A worker home whose checkout is this repository and whose venv is this Python."""
    home = tmp_path / "home"
    (home / "jm-venv" / "bin").mkdir(parents=True)
    (home / "jaxmodels").symlink_to(ROOT)
    venv = home / "jm-venv" / "bin"
    (venv / "jaxmodels").write_text(f'#!/bin/sh\nexec {sys.executable} -m jaxmodels "$@"\n')
    (venv / "jaxmodels").chmod(0o755)
    (venv / "activate").write_text(f"export PATH={venv}:$PATH PYTHONPATH={ROOT}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD.replace("PYTHON", sys.executable))
    (bin_dir / "gcloud").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JM_", "FAKE_"))}
    env.update(BASE, FAKE_HOME=str(home), FAKE_GCLOUD_LOG=str(tmp_path / "gcloud.jsonl"))
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    return home, env


def _script(name, *args, env):
    proc = subprocess.run(
        [str(SCRIPTS / f"{name}.sh"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _jaxmodels(command, *args, env, cwd):
    cmd = [sys.executable, "-m", "jaxmodels", command, f"--config={ROOT / SMOKE}"]
    cmd += ["--workdir=gs://bkt/run", *args]
    proc = subprocess.run(
        cmd, env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_gs_workdir_train_kill_resume_eval(gcs, tmp_path):
    home, env = _fake_worker(tmp_path)
    env.update(gcs)
    # The README's pod command, on a (fake) worker, into the emulator's bucket.
    command = ["jaxmodels", "train", "--config", SMOKE, "--workdir", "gs://bkt/run", *STEPS]
    _script("launch", "--run", "gs1", "--", *command, env=env)
    log = home / "jm-logs" / "gs1.log"
    try:
        committed = _gs("run/checkpoints/20/commit_success.txt")  # orbax's marker on GCS
        _wait_for(lambda: committed.exists() or "rror" in log.read_text())
        assert committed.exists(), log.read_text()[-3000:]
    finally:
        _script("stop", "--run", "gs1", "--signal", "KILL", env=env)
    assert json.loads(_gs("run/train.lock").read_text())["host"] == socket.gethostname()
    # Resume (the killed run's lock is stale: its pid is dead), then evaluate, all on gs://.
    out = _jaxmodels("train", *STEPS, env=env, cwd=tmp_path)
    resumed = int(out.split("resumed from step ")[1].split()[0])
    assert resumed >= 20
    out = _jaxmodels("eval", env=env, cwd=tmp_path)
    assert "step 40: eval_accuracy=" in out
    rows = [json.loads(line) for line in _gs("run/metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    assert train_steps == list(range(1, 41))  # each step once: stale lines dropped on resume
    assert rows[-1]["step"] == 40 and "eval_accuracy" in rows[-1]
    assert json.loads(_gs("run/config.json").read_text())["family"] == "mlp"
    assert any(p.name.startswith("events.out.tfevents") for p in _gs("run/tensorboard").iterdir())
    assert sorted(p.name for p in _gs("run/checkpoints").iterdir())[-1] == "40"
    assert not _gs("run/train.lock").exists()
    assert not (tmp_path / "gs:").exists() and not (home / "jaxmodels" / "gs:").exists()


def test_hf_directory_on_gs_imports_like_the_local_one(gcs, tmp_path):
    """``from_hf``/``config.init.hf`` take a ``gs://`` directory (copied locally first)."""
    import jax
    import numpy as np
    import torch
    import transformers

    from jaxmodels.hf import from_hf, load_pretrained

    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "hf", safe_serialization=True)
    for f in (tmp_path / "hf").iterdir():
        _gs(f"hf/{f.name}").write_bytes(f.read_bytes())
    _, local = from_hf(str(tmp_path / "hf"))
    pretrained = load_pretrained("gs://bkt/hf")
    params = pretrained.read_params()  # the weights are read (from gs://) when asked for
    for a, b in zip(jax.tree.leaves(local), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="gs://bkt/missing"):
        load_pretrained("gs://bkt/missing")


def test_a_preprocessor_config_on_gs_is_read_and_checked(gcs):
    """An HF directory's image statistics (``preprocessor_config.json``) read from ``gs://``."""
    from jaxmodels.convert.read import image_processing

    file = _gs("pp/preprocessor_config.json")
    file.write_text('{"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5], "size": 8}')
    got = image_processing("gs://bkt/pp")
    assert (got.mean, got.std, got.size) == ((0.1, 0.2, 0.3), (0.5,) * 3, (8, 8))
    assert got.file == "gs://bkt/pp/preprocessor_config.json"
    file.write_text('{"image_std": [1, 1, 0]}')
    with pytest.raises(ValueError, match=r"gs://bkt/pp/preprocessor_config.json: image_std="):
        image_processing("gs://bkt/pp")
    assert image_processing("gs://bkt/none") is None


def test_webdataset_shards_on_gs_read_like_local_ones(gcs, tmp_path):
    """Tar shards on ``gs://`` index from their headers and read by ranged requests."""
    from jaxmodels.data import files, webdataset

    files.filesystem.cache_clear()  # a gcsfs client for this emulator
    records = [
        (f"{i:03d}", {"jpg": bytes([i]) * (700 + i), "txt": f"c{i}".encode()}) for i in range(5)
    ]
    for s in range(2):
        webdataset.write_shard(str(tmp_path / f"{s}.tar"), records[s * 3 : s * 3 + 3])
        _gs(f"wds/{s}.tar").write_bytes((tmp_path / f"{s}.tar").read_bytes())
    local = webdataset.WebDatasetSource(webdataset.expand_urls(f"{tmp_path}/{{0..1}}.tar"))
    remote = webdataset.WebDatasetSource(webdataset.expand_urls("gs://bkt/wds/{0..1}.tar"))
    assert len(remote) == len(local) == 5
    for i in range(5):
        assert remote[i]["image"] == local[i]["image"] and remote[i]["captions"] == [f"c{i}"]
    assert remote[4]["where"] == "gs://bkt/wds/1.tar:004"
    with pytest.raises(FileNotFoundError, match="gs://bkt/wds/9.tar"):
        len(webdataset.WebDatasetSource(["gs://bkt/wds/9.tar"]))


def test_zero_shot_folder_on_gs_reads_like_the_local_one(gcs, tmp_path, colour_folder):
    """``config.zero_shot.dir=gs://...``: the labelled folder, its names file and a templates
    file are listed and read from the bucket, and score as the local copy does."""
    import zlib

    import jax.numpy as jnp
    import ml_collections
    import numpy as np

    from jaxmodels.data import files
    from jaxmodels.evaluate import zero_shot_folder
    from jaxmodels.evaluate.chunked import chunked_map

    files.filesystem.cache_clear()  # a gcsfs client for this emulator
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    local = colour_folder(tmp_path / "colours", colours, per_class=2, shade=60.0)
    (tmp_path / "names.txt").write_text("blue thing\ngreen thing\nred thing\n")
    (tmp_path / "templates.txt").write_text("a {}\nthe {}\n")
    for f in [*local.rglob("*.*"), tmp_path / "names.txt", tmp_path / "templates.txt"]:
        _gs(f"zs/{f.relative_to(tmp_path)}").write_bytes(f.read_bytes())

    def text_vectors(params, texts):
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=3)
                         for t in texts])  # fmt: skip

    embed_images = chunked_map(lambda p, x: x.astype(jnp.float32).mean((1, 2)) - 128.0, 4)
    results = []
    for root in (str(tmp_path), "gs://bkt/zs"):
        z = ml_collections.ConfigDict()
        z.dir, z.names_file = f"{root}/colours", f"{root}/names.txt"
        z.templates, z.name = f"{root}/templates.txt", ""
        run = zero_shot_folder.evaluator(z, embed_images, text_vectors, 8)
        results.append(run(None, None))
    assert results[0] == results[1] and set(results[0]) == {"zeroshot_colours_top1"}
