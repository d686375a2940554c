"""The online-action family's data: feature streams with per-frame targets, and their windows.

A dataset is a list of videos, each a features array (L x D) and a per-frame target array
(L x C, one-hot or multi-hot; class 0 is background). Three sources:

* :func:`load_feature_dir`: the on-disk layout of the TRN / LSTR code bases, one
  ``<feature_dir>/<session>.npy`` per feature stream (concatenated along D, e.g. RGB and flow)
  and one ``<target_dir>/<session>.npy``, with split lists from ``data_info.json``
  (``{dataset: {"train_session_set": [...], "test_session_set": [...]}}``) or a text file per
  split (``lists/{split}.txt``).
* :func:`synthetic_streams`: embedded, generated class-conditioned feature segments with
  background between, temporally sparse and confusable evidence, distractors and precursors.
* :func:`sensor_streams`: real smart-watch recordings (BasicMotions, UEA archive; shipped inside
  the ``sktime`` wheel) concatenated into streams, "Standing" serving as background.

:func:`load_videos` picks the source named by ``config.data.source``. Training reads
fixed-length windows through grain: :class:`WindowSource` (a window every ``stride`` frames) or
:class:`EpochWindows` (TRN.pytorch's non-overlapping windows with a random start offset drawn
again every epoch); evaluation streams whole videos (:func:`padded_batches`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import numpy as np


@dataclasses.dataclass
class Videos:
    """Per-video features (L x D) and targets (L x C), plus the class names; ``files`` (when the
    videos come from files) names each video's ``(feature files, target file)`` for errors."""

    features: list[np.ndarray]
    targets: list[np.ndarray]
    class_names: list[str]
    files: list[tuple[str, str]] | None = None

    def __post_init__(self):
        for i, (x, y) in enumerate(zip(self.features, self.targets, strict=True)):
            if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
                raise ValueError(
                    f"video {i}: features {x.shape} and targets {y.shape} must be LxD, LxC"
                )


# ------------------------------------------------------------------------------------------
# TRN / LSTR on-disk layout
# ------------------------------------------------------------------------------------------


def read_sessions(split_file: str, split: str, dataset: str | None = None) -> list[str]:
    """Session names of ``split`` from a TRN/LSTR ``data_info.json``, or from a text file of one
    session a line per split, ``{split}`` in its path standing for the split's name
    (``lists/{split}.txt``: ``lists/train.txt``, ``lists/test.txt``)."""
    if not split_file:
        raise ValueError(
            "config.data.split_file is empty: name a data_info.json or lists/{split}.txt"
        )
    if not split_file.endswith(".json"):
        if "{split}" not in split_file:  # one list would make the held-out videos the training ones
            raise ValueError(
                f"config.data.split_file={split_file!r}: a text list names one split's sessions; "
                "write one list per split and put {split} in the path (lists/{split}.txt reads "
                "lists/<data.train_split>.txt and lists/<data.eval_split>.txt), or give a "
                "data_info.json"
            )
        split_file = split_file.replace("{split}", split)
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"config.data.split_file={split_file!r} does not exist")
    if not split_file.endswith(".json"):
        with open(split_file) as f:
            return [line.strip() for line in f if line.strip()]
    with open(split_file) as f:
        try:
            info = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"config.data.split_file={split_file!r} is not valid JSON ({e})"
            ) from e
    if dataset is not None:
        if not isinstance(info, dict) or dataset not in info:
            keys = sorted(info) if isinstance(info, dict) else type(info).__name__
            raise ValueError(f"config.data.dataset={dataset!r} is not in {split_file} (has {keys})")
        info = info[dataset]
    key = f"{split}_session_set"
    if not isinstance(info, dict) or key not in info:
        keys = sorted(info) if isinstance(info, dict) else type(info).__name__
        raise ValueError(f"{split_file} has no {key!r} (keys: {keys})")
    return list(info[key])


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    """A 2-D ``.npy`` array; every failure names the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing file {path}")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path}: expected a 2-D numeric array (frames x dims), got "
                         f"shape {array.shape} dtype {array.dtype}")  # fmt: skip
    return array


def load_feature_dir(
    data_root: str,
    sessions: list[str],
    feature_dirs: list[str],
    target_dir: str = "target_perframe",
    class_names: list[str] | None = None,
) -> Videos:
    """Loads ``<data_root>/<feature_dir>/<session>.npy`` streams and their per-frame targets."""
    features, targets, files = [], [], []
    for s in sessions:
        paths = [os.path.join(data_root, d, f"{s}.npy") for d in (*feature_dirs, target_dir)]
        streams = [_load_npy(path, True) for path in paths[:-1]]
        y = _load_npy(paths[-1], False).astype(np.float32)
        lengths = {path: len(a) for path, a in zip(paths, [*streams, y], strict=True)}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"session {s}: frame counts differ between files: {lengths}")
        x = streams[0] if len(streams) == 1 else np.concatenate(streams, axis=1)
        features.append(np.asarray(x, np.float32))
        targets.append(y)
        files.append((" + ".join(paths[:-1]), paths[-1]))
    if not features:
        raise ValueError(f"no sessions to load from {data_root}")
    names = class_names or [str(c) for c in range(targets[0].shape[1])]
    return Videos(features, targets, names, files)


# ------------------------------------------------------------------------------------------
# Embedded synthetic streams
# ------------------------------------------------------------------------------------------


def _segments(rng, length, mean_action, mean_background, num_actions):
    """Alternating background / action segments (log-normal lengths) covering ``length`` frames."""
    out, t, action = [], 0, False
    while t < length:
        mean = mean_action if action else mean_background
        n = int(np.clip(rng.lognormal(np.log(mean), 0.5), 4, 6 * mean))
        label = int(rng.integers(1, num_actions + 1)) if action else 0
        out.append((t, min(t + n, length), label))
        t, action = t + n, not action
    return out


def synthetic_streams(
    num_videos: int,
    *,
    num_actions: int = 10,
    feature_dim: int = 64,
    length: tuple[int, int] = (300, 600),
    mean_action: float = 16.0,
    mean_background: float = 24.0,
    evidence: float = 0.4,
    confusion: float = 0.2,
    distractor: float = 0.08,
    ambiguous: bool = True,
    cue_lead: tuple[int, int] | None = None,
    seed: int = 0,
    prototype_seed: int = 1234,
) -> Videos:
    """Generated streams where a single frame is weak evidence and the past decides.

    Action frames of class c show c's prototype with probability ``evidence``, the prototype of
    a fixed confusable partner class with probability ``confusion``, else nothing; all action
    frames carry a weak shared "actionness" direction. Background frames show a random action's
    prototype with probability ``distractor``, and the few frames before an action show a
    class-specific precursor half of the time (so the future is partly predictable). With
    ``cue_lead=(lo, hi)`` every action is instead announced by a 2-frame cue of its precursor
    that starts a lead drawn from [lo, hi] frames before its onset (clipped to the background
    before it): an approach that anticipation can use, as in real video. Noise is
    AR(1) (rho 0.7). Classes: 0 background, 1..num_actions, then "ambiguous" (when enabled) on
    the first frames of 10% of the actions. Prototypes depend only on ``prototype_seed``, so
    train and eval streams (different ``seed``) share them.
    """
    proto_rng = np.random.default_rng(prototype_seed)
    unit = proto_rng.normal(size=(3 * num_actions + 2, feature_dim))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    prototypes, precursors = 3.0 * unit[:num_actions], 2.0 * unit[num_actions : 2 * num_actions]
    actionness = 1.0 * unit[-1]
    partner = np.roll(np.arange(num_actions), 1)  # confusable class pairs
    num_classes = num_actions + 1 + int(ambiguous)
    rng = np.random.default_rng(seed)
    features, targets = [], []
    for _ in range(num_videos):
        n = int(rng.integers(length[0], length[1] + 1))
        x = _ar1_noise(rng, n, feature_dim)
        y = np.zeros((n, num_classes), np.float32)
        segments = _segments(rng, n, mean_action, mean_background, num_actions)
        for i, (s, e, label) in enumerate(segments):
            u = rng.random(e - s)
            if label == 0:
                y[s:e, 0] = 1
                hit = u < distractor
                x[s:e][hit] += prototypes[rng.integers(0, num_actions, hit.sum())]
                nxt = segments[i + 1][2] if i + 1 < len(segments) else 0
                if nxt and cue_lead:
                    start = max(s, e - int(rng.integers(cue_lead[0], cue_lead[1] + 1)))
                    x[start : min(start + 2, e)] += precursors[nxt - 1]
                elif nxt and rng.random() < 0.5:
                    k = min(e - s, int(rng.integers(2, 7)))
                    x[e - k : e] += precursors[nxt - 1]
                continue
            c = label - 1
            y[s:e, label] = 1
            x[s:e] += actionness
            x[s:e][u < evidence] += prototypes[c]
            x[s:e][(u >= evidence) & (u < evidence + confusion)] += prototypes[partner[c]]
            if ambiguous and rng.random() < 0.1:
                y[s : s + 3] = 0
                y[s : s + 3, -1] = 1
        features.append(x.astype(np.float32))
        targets.append(y)
    names = ["background"] + [f"action_{c}" for c in range(1, num_actions + 1)]
    return Videos(features, targets, names + ["ambiguous"] * int(ambiguous))


def _ar1_noise(rng, n, d, rho=0.7):
    eps = rng.normal(size=(n, d))
    x = np.empty_like(eps)
    x[0] = eps[0]
    scale = np.sqrt(1 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + scale * eps[t]
    return x


# ------------------------------------------------------------------------------------------
# Real sensor streams: BasicMotions (shipped in the sktime wheel)
# ------------------------------------------------------------------------------------------


def parse_ts(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads an equal-length multivariate UEA ``.ts`` file: (N x channels x T, labels, names)."""
    names, rows, labels = None, [], []
    with open(path) as f:
        in_data = False
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower().startswith("@classlabel"):
                    names = line.split()[2:]
                in_data = line.lower() == "@data"
                continue
            *channels, label = line.split(":")
            rows.append([np.array(c.split(","), np.float32) for c in channels])
            labels.append(label)
    if names is None or not rows:
        raise ValueError(f"{path} is not a labelled .ts file with data")
    return np.array(rows, np.float32), np.array([names.index(s) for s in labels]), names


def basic_motions_dir() -> str:
    """The BasicMotions folder inside the installed sktime package (found without importing it)."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the BasicMotions sensor data ships inside the `sktime` wheel: `pip install sktime` "
            "(it is read from the package folder; sktime itself is never imported), or set "
            "data.sensor_dir to a folder holding BasicMotions_TRAIN.ts and BasicMotions_TEST.ts"
        )
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", "BasicMotions")


def sensor_streams(
    split: str,
    num_streams: int,
    *,
    recordings_per_stream: int = 8,
    min_length: int = 30,
    sensor_dir: str | None = None,
    background: str = "Standing",
    seed: int = 0,
) -> Videos:
    """Streams of BasicMotions recordings (6-axis watch IMU at 10 Hz, 4 activities).

    Each stream concatenates ``recordings_per_stream`` randomly chosen recordings of the split
    (``train`` -> TRAIN file, else TEST), each cropped to a random length in
    [``min_length``, 100]; the ``background`` activity is class 0. Channels are standardised
    with the TRAIN file's statistics.
    """
    folder = sensor_dir or basic_motions_dir()
    file = "TRAIN" if split == "train" else "TEST"
    train_x, _, _ = parse_ts(os.path.join(folder, "BasicMotions_TRAIN.ts"))
    x, labels, names = parse_ts(os.path.join(folder, f"BasicMotions_{file}.ts"))
    if background not in names:
        raise ValueError(f"background={background!r} is not a BasicMotions class ({names})")
    mean = train_x.mean(axis=(0, 2), keepdims=True)
    std = train_x.std(axis=(0, 2), keepdims=True)
    x = np.swapaxes((x - mean) / std, 1, 2)  # N x T x channels
    order = [names.index(background)] + [i for i in range(len(names)) if names[i] != background]
    remap = np.argsort(order)  # original class index -> stream class index
    rng = np.random.default_rng(seed)
    features, targets = [], []
    for _ in range(num_streams):
        pick = rng.choice(len(x), recordings_per_stream, replace=False)
        parts_x, parts_y = [], []
        for i in pick:
            n = int(rng.integers(min_length, x.shape[1] + 1))
            start = int(rng.integers(0, x.shape[1] - n + 1))
            parts_x.append(x[i, start : start + n])
            parts_y.append(
                np.repeat(np.eye(len(names), dtype=np.float32)[remap[labels[i]]][None], n, 0)
            )
        features.append(np.concatenate(parts_x).astype(np.float32))
        targets.append(np.concatenate(parts_y))
    return Videos(features, targets, [names[i] for i in order])


# ------------------------------------------------------------------------------------------
# Windows for training, padded whole videos for evaluation
# ------------------------------------------------------------------------------------------


class WindowSource:
    """Random-access fixed-length windows: ``features`` (enc_steps x D) and ``targets``.

    Windows start every ``stride`` frames of every video (grain shuffles them each epoch).
    ``targets`` has ``enc_steps + future_steps`` frames: the window's own and the following
    ones the TRN decoder predicts, the video's last frame repeated past its end (as the TRN
    evaluation does).
    """

    def __init__(self, videos: Videos, enc_steps: int, future_steps: int = 0, stride: int = 0):
        self.videos, self.enc_steps, self.future_steps = videos, enc_steps, future_steps
        stride = stride or enc_steps
        self.index = [
            (v, s)
            for v, x in enumerate(videos.features)
            for s in range(0, len(x) - enc_steps + 1, stride)
        ]
        if not self.index:
            raise ValueError(f"no video has enc_steps={enc_steps} frames")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        v, s = self.index[i]
        x, y = self.videos.features[v], self.videos.targets[v]
        frames = np.minimum(np.arange(s, s + self.enc_steps + self.future_steps), len(y) - 1)
        return {"features": np.asarray(x[s : s + self.enc_steps], np.float32), "targets": y[frames]}


class EpochWindows:
    """Non-overlapping windows whose start offset is redrawn every epoch (TRN.pytorch recipe).

    TRN.pytorch rebuilds its THUMOS data layer each epoch, drawing per video an offset
    s ~ U{0, enc_steps - 1} and cutting windows at s, s + enc_steps, ... (``thumos_data_layer.py``).
    Record ``i`` here is window ``i % n`` of epoch ``i // n`` in that epoch's shuffled order, with
    offsets and order a function of ``(seed, epoch)`` only, so grain's checkpointed position
    resumes it exactly. Every epoch has the same ``n`` windows: per video, the count that fits at
    the largest offset (a video's last window is left out in the epochs where a smaller offset
    would have fitted one more). ``len`` covers ``epochs`` epochs; grain repeats beyond that.
    """

    def __init__(self, videos: Videos, enc_steps: int, future_steps: int, epochs: int, seed: int):
        self.videos, self.enc_steps, self.future_steps = videos, enc_steps, future_steps
        self.epochs, self.seed = epochs, seed
        span = enc_steps + future_steps  # frames a window and its decoder targets occupy
        self.counts = np.array(
            [max(0, (len(x) - span - enc_steps + 1) // enc_steps + 1) for x in videos.features]
        )
        if self.counts.sum() == 0:
            raise ValueError(f"no video holds enc_steps={enc_steps} + {future_steps} frames")
        self.video = np.repeat(np.arange(len(self.counts)), self.counts)
        self.k = np.concatenate([np.arange(c) for c in self.counts])
        self._epoch = None

    def __len__(self) -> int:
        return self.epochs * len(self.video)

    def _plan(self, epoch: int):
        if self._epoch != epoch:
            rng = np.random.default_rng((self.seed, epoch))
            offsets = rng.integers(0, self.enc_steps, len(self.counts))
            self._epoch, self._order, self._offsets = (
                epoch,
                rng.permutation(len(self.video)),
                offsets,
            )
        return self._order, self._offsets

    def start(self, i: int) -> tuple[int, int]:
        """(video, first frame) of record ``i``."""
        epoch, j = divmod(i, len(self.video))
        order, offsets = self._plan(epoch)
        w = order[j]
        v = int(self.video[w])
        return v, int(offsets[v] + self.k[w] * self.enc_steps)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        v, s = self.start(i)
        x, y = self.videos.features[v], self.videos.targets[v]
        end = s + self.enc_steps
        return {
            "features": np.asarray(x[s:end], np.float32),
            "targets": y[s : end + self.future_steps],
        }


def padded_batches(videos: Videos, batch_videos: int, length: int | None = None):
    """Yields (features B x length x D, lengths B, indices) of whole videos, zero-padded at the end.

    ``length`` defaults to each batch's longest video; a fixed one avoids recompiling per batch.

    Padding at the end never changes the outputs of a causal model at the real frames.
    """
    order = np.argsort([-len(x) for x in videos.features])  # similar lengths together
    for start in range(0, len(order), batch_videos):
        idx = order[start : start + batch_videos]
        lengths = np.array([len(videos.features[i]) for i in idx])
        dim = videos.features[idx[0]].shape[1]
        x = np.zeros((len(idx), length or lengths.max(), dim), np.float32)
        for row, i in enumerate(idx):
            x[row, : lengths[row]] = videos.features[i]
        yield x, lengths, idx


def load_splits(d, seed: int) -> tuple[Videos, Videos]:
    """``config.data`` -> the train and eval Videos, checked against each other before anything
    trains: every video has the first training video's feature width and classes, and
    ``data.ambiguous`` is one of those classes. Errors name the files."""
    train, held = load_videos(d, "train", seed), load_videos(d, "eval", seed)
    ref = _describe(train, 0, "train")
    dims, classes = train.features[0].shape[1], train.targets[0].shape[1]
    for split, videos in (("train", train), ("eval", held)):
        for i, (x, y) in enumerate(zip(videos.features, videos.targets, strict=True)):
            if x.shape[1] != dims:
                got = _describe(videos, i, split)
                raise ValueError(
                    f"{got[0]} has {x.shape[1]} feature dims but {ref[0]} has {dims}: every "
                    "session needs features of the same width (config.data.feature_dirs)"
                )
            if y.shape[1] != classes:
                got = _describe(videos, i, split)
                raise ValueError(
                    f"{got[1]} has {y.shape[1]} classes but {ref[1]} has {classes}: every "
                    "session needs targets over the same classes (config.data.target_dir)"
                )
    if d.ambiguous >= classes:
        raise ValueError(
            f"config.data.ambiguous={d.ambiguous} is not a class of the targets ({ref[1]} has "
            f"{classes}); set it to the ambiguous class's index, or -1 for none"
        )
    return train, held


def _describe(videos: Videos, i: int, split: str) -> tuple[str, str]:
    """Where video ``i``'s features and targets come from, for errors."""
    return videos.files[i] if videos.files else (f"{split} video {i}",) * 2


def load_videos(d, split: str, seed: int) -> Videos:
    """``config.data`` -> the Videos of ``split`` (train | eval) from ``d.source``."""
    train = split == "train"
    seed = seed + (0 if train else 1)
    n = d.num_train_videos if train else d.num_eval_videos
    if d.source == "synthetic":
        cue = tuple(d.get("cue_lead", (0, 0)))
        return synthetic_streams(
            n,
            num_actions=d.num_actions,
            feature_dim=d.feature_dim,
            cue_lead=cue if any(cue) else None,
            seed=seed,
        )
    if d.source == "sensor":
        return sensor_streams(split, n, sensor_dir=d.get("sensor_dir") or None, seed=seed)
    if d.source == "files":
        sessions = read_sessions(
            d.split_file, d.train_split if train else d.eval_split, d.get("dataset") or None
        )
        return load_feature_dir(d.data_root, sessions, list(d.feature_dirs), d.target_dir)
    raise ValueError(f"config.data.source={d.source!r} is not one of: synthetic, sensor, files")
