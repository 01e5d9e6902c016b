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
    with pytest.raises(CheckpointError, match=r"has no checkpoint of step 999 \(it has steps: 2, 3\)"):
        reader.restore(state(0), step=999)
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


def flip_one_byte_of_the_largest_array_file(checkpoint) -> None:
    files = [p for p in (checkpoint / "state").rglob("*") if p.is_file() and "d" in p.parent.name]
    data_file = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    data_file.write_bytes(bytes(data))


def big_state(value: float) -> dict:
    return {"step": jnp.asarray(int(value), jnp.int32),
            "w": jnp.full((64, 1024), value, jnp.float32) + jnp.arange(1024, dtype=jnp.float32)}


def test_a_flipped_byte_is_caught_by_the_checksums_and_the_one_before_is_used(tmp_path, capsys):
    checkpoints = Checkpoints(tmp_path, keep=3)
    for step in (1, 2):
        checkpoints.save(step, big_state(step), {}, {})
    checkpoints.close()
    flip_one_byte_of_the_largest_array_file(tmp_path / "checkpoints" / "2")
    reopened = Checkpoints(tmp_path, keep=3)
    restored, meta = reopened.restore(big_state(0))
    reopened.close()
    assert meta["step"] == 1 and float(restored["w"][0, 0]) == 1.0
    assert "array state['w'] does not match its checksum" in capsys.readouterr().err
    assert (tmp_path / "checkpoints" / "2.unreadable").is_dir()
    # Asked for by step (gptjax sample --step 2 on a copy), the damaged one is an error, not a silent read.
    (tmp_path / "checkpoints" / "2.unreadable").rename(tmp_path / "checkpoints" / "2")
    reader = Checkpoints(tmp_path, read_only=True)
    with pytest.raises(CheckpointError, match=r"checkpoint 2 in .* cannot be read \(.*does not match its checksum.*"
                                              r"\); other steps there: 1; pick one of those"):
        reader.restore(big_state(0), step=2)
    reader.close()


def test_checksums_see_every_word_of_every_dtype_and_their_order():
    from gptjax.checkpoint import checksums

    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    tree = {"f32": jnp.asarray(x), "bf16": jnp.asarray(x, jnp.bfloat16), "i8": jnp.asarray(x, jnp.int8),
            "f64": np.asarray(x, np.float64), "b": jnp.asarray(x > 3)}
    base = checksums(tree)
    for name in tree:
        for index in [(0, 0), (3, 5), (2, 1)]:
            changed = dict(tree)
            y = np.array(tree[name])
            y[index] = not y[index] if y.dtype == bool else y[index] + 1
            changed[name] = y
            assert checksums(changed)[f"['{name}']"] != base[f"['{name}']"], (name, index)
    swapped = dict(tree, f32=jnp.asarray(x[::-1]))  # the same words in another order
    assert checksums(swapped)["['f32']"] != base["['f32']"]
