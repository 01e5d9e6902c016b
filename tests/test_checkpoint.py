"""gptjax.checkpoint on its own: which checkpoints are kept, the best one, restoring, read-only opening."""

import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.checkpoint import CheckpointError, Checkpoints


def state(value: float) -> dict:
    return {"step": jnp.asarray(int(value), jnp.int32), "w": jnp.full((3,), value, jnp.float32)}


def steps_on_disk(directory) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def test_the_newest_keep_are_kept_and_the_newest_is_restored(tmp_path):
    checkpoints = Checkpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        checkpoints.save(step, state(step), {"cfg": 1}, {"data": {"position": step}})
    checkpoints.close()
    assert steps_on_disk(tmp_path / "checkpoints") == [2, 3]
    reader = Checkpoints(tmp_path, read_only=True)
    restored, meta = reader.restore(state(0))
    assert float(restored["w"][0]) == 3.0 and meta["step"] == 3 and meta["data"] == {"position": 3}
    restored, _ = reader.restore(state(0), step=2)
    assert float(restored["w"][0]) == 2.0
    reader.close()


def test_keep_best_saves_only_a_lower_validation_loss_and_remembers_it_across_restarts(tmp_path):
    checkpoints = Checkpoints(tmp_path, keep=1, keep_best=True)
    assert checkpoints.save_if_best(1, 2.0, state(1), {}, {}) is True
    assert checkpoints.save_if_best(2, 2.5, state(2), {}, {}) is False  # worse: nothing written
    assert checkpoints.save_if_best(3, 1.5, state(3), {}, {}) is True
    checkpoints.close()
    assert steps_on_disk(tmp_path / "checkpoints_best") == [3]
    again = Checkpoints(tmp_path, keep=1, keep_best=True)  # a resumed run compares with the saved best
    assert again.best_loss == 1.5 and again.save_if_best(4, 1.7, state(4), {}, {}) is False
    restored, meta = again.restore(state(0), best=True)
    assert float(restored["w"][0]) == 3.0 and meta["val_loss"] == 1.5
    again.close()


def test_opening_read_only_creates_nothing_and_an_empty_run_is_one_clear_error(tmp_path):
    reader = Checkpoints(tmp_path, read_only=True)
    with pytest.raises(CheckpointError, match=r"checkpoints holds no checkpoint"):
        reader.restore(state(0))
    with pytest.raises(CheckpointError, match=r"checkpoints_best holds no checkpoint"):
        reader.restore(state(0), best=True)
    reader.close()
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    checkpoints = Checkpoints(tmp_path, keep=3)
    for step in (1, 2):
        checkpoints.save(step, state(step), {}, {})
    checkpoints.close()
    (tmp_path / "checkpoints" / "2" / "meta" / "metadata").write_text("{not json")
    reopened = Checkpoints(tmp_path, keep=3)
    restored, meta = reopened.restore(state(0))
    reopened.close()
    assert meta["step"] == 1 and np.asarray(restored["w"]).tolist() == [1.0] * 3
    assert "could not be read" in capsys.readouterr().err
    assert (tmp_path / "checkpoints" / "2.unreadable").is_dir()  # kept aside for inspection
