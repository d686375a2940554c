import numpy as np
import pytest

from jaxmodels.data import pipeline


def _source(n=10):
    return pipeline.ArraySource({"x": np.arange(n), "y": np.arange(n) * 2})


def test_batches_cover_epoch_and_reshuffle():
    it = pipeline.make_iterator(_source(), global_batch_size=5, seed=0)
    epoch1 = np.concatenate([next(it)["x"] for _ in range(2)])
    epoch2 = np.concatenate([next(it)["x"] for _ in range(2)])
    assert sorted(epoch1) == list(range(10)) and sorted(epoch2) == list(range(10))
    assert not np.array_equal(epoch1, epoch2)


def test_state_restores_exact_position():
    it = pipeline.make_iterator(_source(), global_batch_size=4, seed=3)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it)["x"] for _ in range(4)]
    fresh = pipeline.make_iterator(_source(), global_batch_size=4, seed=3)
    fresh.set_state(state)
    np.testing.assert_array_equal(
        np.stack(expected), np.stack([next(fresh)["x"] for _ in range(4)])
    )


def test_processes_partition_the_data():
    seen = []
    for p in range(2):
        it = pipeline.make_iterator(
            _source(),
            global_batch_size=4,
            seed=0,
            process_index=p,
            process_count=2,
            shuffle=False,
            repeat=False,
            drop_remainder=False,
        )
        batches = list(it)
        assert batches[0]["x"].shape == (2,)
        seen += [x for b in batches for x in b["x"]]
    assert sorted(seen) == list(range(10))


def test_transform_and_errors():
    it = pipeline.make_iterator(
        _source(), global_batch_size=2, seed=0, transform=lambda r: {"z": r["x"] + r["y"]}
    )
    b = next(it)
    assert set(b) == {"z"} and b["z"].shape == (2,)
    with pytest.raises(ValueError, match="divisible"):
        pipeline.make_iterator(_source(), global_batch_size=3, seed=0, process_count=2)
    with pytest.raises(ValueError, match="differ in length"):
        pipeline.ArraySource({"a": np.zeros(2), "b": np.zeros(3)})
