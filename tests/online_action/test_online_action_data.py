"""Online-action data: TRN/LSTR on-disk layout, synthetic and sensor streams, windows."""

import json

import numpy as np
import pytest

from jaxmodels.config import load_config
from jaxmodels.data import pipeline
from jaxmodels.models.online_action import data
from jaxmodels.train import loop


def _write_layout(root, sessions, lengths, dims=(3, 2), classes=4):
    rng = np.random.default_rng(0)
    for d, dim in zip(("rgb", "flow"), dims, strict=True):
        (root / d).mkdir(exist_ok=True)
        for s, n in zip(sessions, lengths, strict=True):
            np.save(root / d / f"{s}.npy", rng.normal(size=(n, dim)).astype(np.float32))
    (root / "target_perframe").mkdir(exist_ok=True)
    for s, n in zip(sessions, lengths, strict=True):
        np.save(root / "target_perframe" / f"{s}.npy", np.eye(classes)[rng.integers(0, classes, n)])


def test_feature_dir_layout_with_json_and_text_splits(tmp_path):
    _write_layout(tmp_path, ["a", "b", "c"], [10, 7, 5])
    info = {"THUMOS": {"train_session_set": ["a", "b"], "test_session_set": ["c"]}}
    (tmp_path / "data_info.json").write_text(json.dumps(info))
    (tmp_path / "test.txt").write_text("c\n\n")
    train = data.read_sessions(str(tmp_path / "data_info.json"), "train", "THUMOS")
    assert train == ["a", "b"]
    assert data.read_sessions(str(tmp_path / "{split}.txt"), "test") == ["c"]
    with pytest.raises(FileNotFoundError, match=r"split_file='.*train.txt' does not exist"):
        data.read_sessions(str(tmp_path / "{split}.txt"), "train")
    # one list for both splits would evaluate on the training videos: refused, naming the key
    with pytest.raises(ValueError, match=r"config.data.split_file='.*test.txt'.*\{split\}"):
        data.read_sessions(str(tmp_path / "test.txt"), "test")
    videos = data.load_feature_dir(str(tmp_path), train, ["rgb", "flow"])
    assert [x.shape for x in videos.features] == [(10, 5), (7, 5)]
    np.testing.assert_array_equal(videos.features[1][:, :3], np.load(tmp_path / "rgb" / "b.npy"))
    np.testing.assert_array_equal(videos.features[1][:, 3:], np.load(tmp_path / "flow" / "b.npy"))
    assert videos.targets[0].shape == (10, 4)
    with pytest.raises(ValueError, match="data.dataset='TVSeries'"):
        data.read_sessions(str(tmp_path / "data_info.json"), "train", "TVSeries")
    with pytest.raises(FileNotFoundError, match="missing file"):
        data.load_feature_dir(str(tmp_path), ["zzz"], ["rgb"])


def _files_config(root):
    config = load_config("experiments/online_action/trn.py:smoke")
    config.data.update(source="files", data_root=str(root), feature_dirs=("rgb", "flow"))
    config.data.update(split_file=str(root / "info.json"), ambiguous=-1)
    info = {"THUMOS": {"train_session_set": ["a", "b"], "test_session_set": ["c"]}}
    (root / "info.json").write_text(json.dumps(info))
    return config


def test_files_that_do_not_match_stop_the_build_naming_them(tmp_path):
    """Broken split JSON, and eval sessions whose feature width or classes differ from the
    training sessions': named before anything trains (they used to surface after training, at
    the first evaluation, as a shape error naming no file)."""
    config = _files_config(tmp_path)
    (tmp_path / "info.json").write_text('{"THUMOS": {')
    with pytest.raises(ValueError, match=r"config.data.split_file='.*info.json' is not valid JSON"):
        loop.train(config, str(tmp_path / "run"))
    _write_layout(tmp_path, ["a", "b", "c"], [40, 40, 40])
    config = _files_config(tmp_path)
    for bad, match in [
        ({"dims": (3, 1)}, r"flow/c.npy has 4 feature dims but .*rgb/a.npy \+ .*flow/a.npy has 5"),
        ({"classes": 5}, r"target_perframe/c.npy has 5 classes but .*target_perframe/a.npy has 4"),
    ]:
        _write_layout(tmp_path, ["c"], [40], **bad)  # the eval session differs
        with pytest.raises(ValueError, match=match):
            loop.train(config, str(tmp_path / "run"))
        assert not (tmp_path / "run" / "checkpoints").exists() or not any(
            (tmp_path / "run" / "checkpoints").iterdir()
        )
    _write_layout(tmp_path, ["c"], [40])
    config.data.ambiguous = 4  # the targets have classes 0..3
    with pytest.raises(ValueError, match=r"config.data.ambiguous=4 is not a class .* has 4\)"):
        loop.train(config, str(tmp_path / "run"))


def test_untrusted_files_are_not_unpickled_and_lengths_checked(tmp_path):
    _write_layout(tmp_path, ["a"], [6])
    evil = np.array([{"x": 1}], dtype=object)
    for path in (tmp_path / "rgb" / "a.npy", tmp_path / "target_perframe" / "a.npy"):
        good = np.load(path)
        np.save(path, evil, allow_pickle=True)
        with pytest.raises(ValueError, match="pickle|Python objects"):
            data.load_feature_dir(str(tmp_path), ["a"], ["rgb"])
        np.save(path, good)
    np.save(tmp_path / "rgb" / "a.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="frame counts differ.*rgb/a.npy"):
        data.load_feature_dir(str(tmp_path), ["a"], ["rgb"])


@pytest.mark.parametrize("bad", [b"not an npy file", "1-D", "strings"])
def test_malformed_feature_files_are_named(tmp_path, bad):
    _write_layout(tmp_path, ["a"], [6])
    path = tmp_path / "flow" / "a.npy"
    if bad == "1-D":
        np.save(path, np.zeros(6, np.float32))
    elif bad == "strings":
        np.save(path, np.array([["x", "y"]] * 6))
    else:
        path.write_bytes(bad)
    with pytest.raises(ValueError, match=f"{path}"):
        data.load_feature_dir(str(tmp_path), ["a"], ["rgb", "flow"])


def test_synthetic_streams_are_realistic_and_deterministic():
    videos = data.synthetic_streams(12, num_actions=5, feature_dim=8, seed=3)
    y = np.concatenate(videos.targets)
    assert y.shape[1] == 7 and np.all(y.sum(1) == 1)  # one-hot: background, 5 actions, ambiguous
    assert 0.45 < y[:, 0].mean() < 0.8  # THUMOS-like background share
    assert 0 < y[:, -1].mean() < 0.05  # a few ambiguous frames
    labels = y.argmax(1)
    runs = np.diff(np.flatnonzero(np.diff(labels) != 0))
    assert 8 < np.median(runs) < 40  # segments of tens of frames
    again = data.synthetic_streams(12, num_actions=5, feature_dim=8, seed=3)
    np.testing.assert_array_equal(videos.features[4], again.features[4])
    # Class evidence is sparse: a single action frame is a weak cue, its segment mean a strong one.
    x = np.concatenate(videos.features)
    mean_action = x[(labels >= 1) & (labels <= 5)].mean(0)
    assert np.linalg.norm(mean_action - x[labels == 0].mean(0)) > 0.5


def _write_ts(path, series, labels, names):
    lines = ["# test file", "@problemName Tiny", f"@classLabel true {' '.join(names)}", "@data"]
    for s, lab in zip(series, labels, strict=True):
        lines.append(":".join(",".join(f"{v:.4f}" for v in ch) for ch in s) + f":{lab}")
    path.write_text("\n".join(lines) + "\n")


def test_ts_parser_and_sensor_streams(tmp_path):
    rng = np.random.default_rng(0)
    names = ["Standing", "Running", "Walking", "Badminton"]
    for split in ("TRAIN", "TEST"):
        series = rng.normal(size=(8, 6, 100))
        labels = [names[i % 4] for i in range(8)]
        _write_ts(tmp_path / f"BasicMotions_{split}.ts", series, labels, names)
    x, y, parsed = data.parse_ts(str(tmp_path / "BasicMotions_TRAIN.ts"))
    assert x.shape == (8, 6, 100) and parsed == names and list(y[:4]) == [0, 1, 2, 3]
    videos = data.sensor_streams(
        "eval", 3, recordings_per_stream=4, sensor_dir=str(tmp_path), background="Walking"
    )
    assert videos.class_names[0] == "Walking" and len(videos.features) == 3
    for f, t in zip(videos.features, videos.targets, strict=True):
        assert f.shape[1] == 6 and 4 * 30 <= len(f) <= 400 and np.all(t.sum(1) == 1)
    with pytest.raises(ValueError, match="background='Jumping'"):
        data.sensor_streams("eval", 1, sensor_dir=str(tmp_path), background="Jumping")


def test_windows_with_future_targets_through_grain():
    x = np.arange(20, dtype=np.float32)[:, None].repeat(2, 1)
    y = np.eye(3, dtype=np.float32)[np.arange(20) % 3]
    videos = data.Videos([x, x[:9]], [y, y[:9]], ["bg", "a", "b"])
    source = data.WindowSource(videos, enc_steps=8, future_steps=3, stride=4)
    assert source.index == [(0, 0), (0, 4), (0, 8), (0, 12), (1, 0)]
    last = source[3]
    np.testing.assert_array_equal(last["features"][:, 0], np.arange(12, 20))
    frames = np.minimum(np.arange(12, 23), 19)  # future past the end repeats the last frame
    np.testing.assert_array_equal(last["targets"], y[frames])
    it = pipeline.make_iterator(source, global_batch_size=2, seed=0)
    batch = next(it)
    assert batch["features"].shape == (2, 8, 2) and batch["targets"].shape == (2, 11, 3)
    padded = list(data.padded_batches(videos, 2, length=24))
    assert padded[0][0].shape == (2, 24, 2) and list(padded[0][1]) == [20, 9]


def test_basic_motions_from_the_sktime_wheel_when_installed():
    try:
        folder = data.basic_motions_dir()
    except FileNotFoundError as e:
        assert "pip install sktime" in str(e)
        pytest.skip("sktime (which ships BasicMotions) is not installed")
    x, y, names = data.parse_ts(f"{folder}/BasicMotions_TRAIN.ts")
    assert x.shape == (40, 6, 100)
    assert sorted(names) == ["Badminton", "Running", "Standing", "Walking"]
    assert np.bincount(y).tolist() == [10, 10, 10, 10]


def test_epoch_windows_redraw_their_offset_every_epoch():
    """TRN.pytorch's recipe: per epoch and video a start offset in [0, enc_steps), then windows
    every enc_steps frames; each epoch shuffled; a pure function of (seed, epoch)."""
    lengths = [50, 37, 80]
    x = [np.arange(n, dtype=np.float32)[:, None] for n in lengths]
    y = [np.eye(3, dtype=np.float32)[np.arange(n) % 3] for n in lengths]
    videos = data.Videos(x, y, ["bg", "a", "b"])
    source = data.EpochWindows(videos, enc_steps=8, future_steps=2, epochs=4, seed=0)
    n = len(source) // 4
    assert n == sum((L - 10 - 8 + 1) // 8 + 1 for L in lengths)
    offsets = []
    for epoch in range(4):
        starts = [source.start(epoch * n + j) for j in range(n)]
        assert len(set(starts)) == n  # every window once per epoch
        for v in range(3):
            s = sorted(start for video, start in starts if video == v)
            assert np.all(np.diff(s) == 8) and 0 <= s[0] < 8  # non-overlapping, offset < enc
            assert s[-1] + 10 <= lengths[v]  # window and decoder targets inside the video
            offsets.append(s[0])
        record = source[epoch * n]
        video, start = starts[0]
        np.testing.assert_array_equal(record["features"][:, 0], np.arange(start, start + 8))
        np.testing.assert_array_equal(record["targets"], y[video][start : start + 10])
    assert len(set(offsets)) > 3  # offsets change across epochs
    again = data.EpochWindows(videos, enc_steps=8, future_steps=2, epochs=4, seed=0)
    assert [again.start(i) for i in range(2 * n)][::-1] == [
        source.start(i) for i in reversed(range(2 * n))
    ]


def test_cued_streams_announce_every_action():
    """With cue_lead, each action's precursor shows up lo..hi frames before its onset."""
    A, dim, lead = 5, 16, (6, 10)
    unit = np.random.default_rng(1234).normal(size=(3 * A + 2, dim))  # the prototype_seed
    precursor = unit[A : 2 * A] / np.linalg.norm(unit[A : 2 * A], axis=1, keepdims=True)

    def cue_signal(videos):
        hits = []
        for f, t in zip(videos.features, videos.targets, strict=True):
            labels = t.argmax(1)
            for onset in np.flatnonzero((labels[1:] >= 1) & (labels[1:] <= A) & (labels[:-1] == 0)):
                c = labels[onset + 1] - 1
                before = f[max(0, onset + 1 - lead[1]) : onset + 1 - lead[0] + 2] @ precursor[c]
                hits.append(before.max())
        return np.mean(hits)

    cued = data.synthetic_streams(10, num_actions=A, feature_dim=dim, cue_lead=lead, seed=5)
    plain = data.synthetic_streams(10, num_actions=A, feature_dim=dim, seed=5)
    assert cue_signal(cued) > cue_signal(plain) + 0.7
