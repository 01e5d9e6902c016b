"""gptjax.trainer and gptjax.hooks on their own: when hooks run, what they see, the non-finite policy, a pluggable objective."""

import json
import math

import jax.numpy as jnp
import pytest

from gptjax.config import ConfigError, load_config
from gptjax.step import cross_entropy
from gptjax.hooks import Hook
from gptjax.trainer import NonFinitePolicy, Throughput, Trainer, TrainingError

QUICK = ["data.max_chars=40000", "model.num_layers=1", "model.num_heads=2", "model.d_model=32",
         "model.block_size=16", "train.batch_size=4", "train.steps=6", "train.eval_every=0", "train.eval_batches=1",
         "train.log_every=1", "train.sample_tokens=0", "optim.warmup_steps=1"]


def metrics_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------
# When a hook is due


@pytest.mark.parametrize("hook, step, last, stopping, due", [
    (Hook(print, every=2), 4, False, False, True),
    (Hook(print, every=2), 3, False, False, False),
    (Hook(print, every=2), 3, True, False, True),  # at_end by default
    (Hook(print, every=2, at_end=False), 3, True, False, False),
    (Hook(print, every=0), 4, False, False, False),  # not periodic
    (Hook(print, every=2), 4, False, True, False),  # a stop runs only the at_stop hooks
    (Hook(print, every=0, at_stop=True), 3, False, True, True),
])
def test_hook_due(hook, step, last, stopping, due):
    assert hook.due(step, last=last, stopping=stopping) is due


def test_hooks_run_in_order_at_their_steps_and_their_results_join_the_final_metrics(tmp_path):
    trainer = Trainer(load_config(None, QUICK + ["checkpoint.every=3"]), tmp_path / "run")
    seen = []

    def every_two(info):
        # Each hook sees the state after its step, and the run's checkpoints so far.
        seen.append(("two", info.step, int(info.state.step), trainer.checkpoints.latest_step()))
        return {"two": float(info.step)}

    trainer.add_hook(every_two, every=2)
    trainer.add_hook(lambda info: seen.append(("start", info.step)), at_start=True, at_end=False)
    final = trainer.run()
    # The checkpoint hook (a default) runs before the hooks added, so step 6 sees its own checkpoint.
    assert seen == [("start", 0), ("two", 2, 2, None), ("two", 4, 4, 3), ("two", 6, 6, 6)]
    assert final["two"] == 6.0 and math.isfinite(final["loss"])
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [3, 6]


def test_a_run_ends_by_saying_where_it_is_and_what_comes_next(tmp_path, capsys):
    Trainer(load_config(None, QUICK), tmp_path / "my run").run()
    said = capsys.readouterr().out
    run = tmp_path / "my run"
    assert f"run {run}: step 6, checkpoint {run}/checkpoints/6\n" in said
    assert f"  sample:   python -m gptjax.sample --workdir '{run}' --prompt 'Once'" in said  # quoted for the shell
    assert f"  evaluate: python -m gptjax.evaluate --workdir '{run}' --task val_loss" in said
    assert "continue: the same command with a larger --config.train.steps (now 6)" in said
    assert "mesh: data 1 x fsdp 1 x tensor 1; parameters" in said and "{" not in said.split("compiled")[0]


def test_without_default_hooks_the_loop_only_steps(tmp_path):
    trainer = Trainer(load_config(None, QUICK), tmp_path / "run", default_hooks=False)
    read = []
    trainer.metric_hooks.append(lambda step, metrics: read.append((step, sorted(metrics))))
    final = trainer.run()
    assert [s for s, _ in read] == [1, 2, 3, 4, 5, 6]  # every step's metrics, read once each
    assert read[0][1] == ["grad_norm", "loss", "lr", "param_norm"]
    assert math.isfinite(final["loss"]) and "val_loss" not in final
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ""  # nothing logged without the logging hook


def test_a_custom_objective_trains_through_the_same_loop(tmp_path):
    # Predict the token two ahead instead of the next one: a different loss through the same step and loop.
    def skip_one(model, tokens, *, deterministic, rngs):
        logits = model(tokens[:, :-2], deterministic=deterministic, rngs=rngs)
        return cross_entropy(logits, tokens[:, 2:])

    calls = []

    def counted(model, tokens, **kw):
        calls.append(tokens.shape)  # traced once per compiled program
        return skip_one(model, tokens, **kw)

    cfg = load_config(None, QUICK + ["train.steps=20", "train.eval_every=10", "optim.lr=3e-3"])
    final = Trainer(cfg, tmp_path / "run", objective=counted).run()
    lines = metrics_lines(tmp_path / "run")
    losses = [r["loss"] for r in lines if "loss" in r]
    assert calls and losses[-1] < losses[0]
    assert "val_loss" in final  # evaluation uses the same objective
    default = Trainer(load_config(None, QUICK + ["train.steps=20", "train.eval_every=10", "optim.lr=3e-3"]),
                      tmp_path / "default").run()
    assert final["val_loss"] != pytest.approx(default["val_loss"], abs=1e-6)


def test_a_failing_hook_leaves_the_checkpoints_intact(tmp_path):
    trainer = Trainer(load_config(None, QUICK + ["checkpoint.every=2"]), tmp_path / "run")

    def boom(info):
        if info.step == 4:
            raise RuntimeError("hook failed")

    trainer.add_hook(boom, every=1)
    with pytest.raises(RuntimeError, match="hook failed"):
        trainer.run()
    # The checkpoint of step 4 was saved before the failing hook ran (default hooks first), and is complete.
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [2, 4]
    assert Trainer(load_config(None, QUICK + ["checkpoint.every=2"]), tmp_path / "run").run()["loss"] > 0


# ----------------------------------------------------------------------------------------------------------------
# The small pieces


def metrics(loss=1.0, grad_norm=1.0, param_norm=1.0, skipped=0):
    return dict(loss=loss, grad_norm=grad_norm, param_norm=param_norm, lr=1e-3, skipped=skipped)


def test_nonfinite_policy_stops_naming_what_and_what_is_kept():
    policy = NonFinitePolicy("stop", 10)
    policy.check(1, metrics(), kept=None)
    with pytest.raises(TrainingError, match=r"grad norm became nan at step 7; the checkpoint of step 5 is kept"):
        policy.check(7, metrics(grad_norm=float("nan")), kept=5)
    with pytest.raises(TrainingError, match=r"loss became inf at step 2; no checkpoint was saved"):
        policy.check(2, metrics(loss=float("inf")), kept=None)


def test_nonfinite_policy_counts_skips_and_gives_up_after_too_many_in_a_row(capsys):
    policy = NonFinitePolicy("skip", 2)
    nan = float("nan")
    policy.check(1, metrics(loss=nan, skipped=1), kept=None)
    policy.check(2, metrics(loss=nan, skipped=1), kept=None)
    policy.check(3, metrics(), kept=None)  # a good step resets the run of skips, not the count
    assert (policy.skipped, policy.skipped_in_a_row) == (2, 0)
    policy.check(4, metrics(loss=nan, skipped=1), kept=None)
    policy.check(5, metrics(loss=nan, skipped=1), kept=None)
    with pytest.raises(TrainingError, match=r"3 skipped steps in a row \(train.max_consecutive_skips=2\)"):
        policy.check(6, metrics(loss=nan, skipped=1), kept=None)
    assert "update skipped (2 so far)" in capsys.readouterr().err


def test_throughput_leaves_out_excluded_time():
    clock = Throughput()
    clock.steps = 3
    clock.exclude(-10.0)  # as if 10 s more had passed, all of it training
    steps, seconds = clock.take()
    assert steps == 3 and seconds >= 10.0
    assert clock.steps == 0 and clock.take()[1] < 1.0


def test_objective_batches_may_be_trees():
    # The step splits any pytree batch into micro-batches along its leading axis (SFT's tokens + mask).
    from gptjax.model import ModelConfig
    from gptjax.state import setup
    from gptjax.step import make_train_step

    def masked(model, batch, *, deterministic, rngs):
        logits = model(batch["tokens"][:, :-1], deterministic=deterministic, rngs=rngs)
        return cross_entropy(logits, batch["tokens"][:, 1:]) * batch["weight"].mean()

    cfg = load_config(None, ["model.num_layers=1", "model.d_model=32", "model.num_heads=2", "model.block_size=8"])
    built = setup(cfg, ModelConfig.from_config(cfg.model, 16))
    tokens = jnp.arange(4 * 9, dtype=jnp.int32).reshape(4, 9) % 16
    results = []
    for accum in (1, 2):
        step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=accum, seed=0, objective=masked)
        _, m = step(built.init(0), {"tokens": tokens, "weight": jnp.ones((4,))})
        results.append(float(m["loss"]))
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_a_second_signal_stops_at_once_with_the_shells_status(capsys):
    import os
    import signal
    import time

    from gptjax.errors import Interrupted
    from gptjax.trainer import StopRequest

    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # Python runs the handler between bytecodes
        assert stop.requested(1) and stop.received == "SIGTERM"
        assert "finishing this step and saving a checkpoint" in capsys.readouterr().err
        with pytest.raises(Interrupted, match=r"SIGTERM received a second time: stopped at once") as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert raised.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is before  # a third signal gets the default treatment
    finally:
        stop.restore()


def test_report_errors_turns_a_keyboard_interrupt_into_one_line_and_130(capsys):
    from gptjax.errors import report_errors

    def interrupted():
        raise KeyboardInterrupt

    assert report_errors(interrupted) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


# ----------------------------------------------------------------------------------------------------------------
# train.z_loss


def test_z_loss_is_added_to_the_training_loss_and_left_out_of_validation():
    """loss = cross-entropy + z_loss * mean(logsumexp(logits)^2), computed here independently; the objective
    reports both terms, and without z_loss it is the plain cross-entropy (what validation scores)."""
    import jax
    import numpy as np
    from flax import nnx

    from gptjax.model import GPT, ModelConfig
    from gptjax.step import next_token_loss

    model = GPT(ModelConfig(vocab_size=40, block_size=16, num_layers=1, num_heads=2, d_model=16), rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 17), 0, 40)
    loss, metrics = next_token_loss(model, tokens, deterministic=True, rngs=None, z_loss=1e-2)
    logits = np.asarray(model(tokens[:, :-1]), np.float64)
    lse = np.log(np.exp(logits).sum(-1))
    ce = (lse - np.take_along_axis(logits, np.asarray(tokens[:, 1:])[..., None], -1)[..., 0]).mean()
    assert float(metrics["cross_entropy"]) == pytest.approx(ce, rel=1e-5)
    assert float(metrics["z_loss"]) == pytest.approx((lse ** 2).mean(), rel=1e-5)
    assert float(loss) == pytest.approx(ce + 1e-2 * (lse ** 2).mean(), rel=1e-5)
    assert float(next_token_loss(model, tokens, deterministic=True, rngs=None)) == pytest.approx(ce, rel=1e-5)


def test_z_loss_trains_and_is_reported(tmp_path):
    cfg = QUICK + ["train.steps=4", "train.eval_every=4"]
    final = Trainer(load_config(None, cfg + ["train.z_loss=0.01"]), tmp_path / "z").run()
    lines = [r for r in metrics_lines(tmp_path / "z") if "loss" in r]
    for r in lines:
        assert r["loss"] == pytest.approx(r["cross_entropy"] + 0.01 * r["z_loss"], rel=1e-5)
    assert "val_loss" in final and "val_z_loss" not in final and "val_cross_entropy" not in final
    plain = Trainer(load_config(None, cfg), tmp_path / "plain").run()
    assert final["val_loss"] != plain["val_loss"]  # the gradient has the z-loss's term
    first = next(r for r in metrics_lines(tmp_path / "plain") if "loss" in r)
    assert first["loss"] == pytest.approx(lines[0]["cross_entropy"], rel=1e-6)  # step 1: the same weights


def test_z_loss_with_an_objective_that_takes_none_is_refused(tmp_path):
    def objective(model, tokens, *, deterministic, rngs):
        return cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])

    with pytest.raises(ConfigError, match="train.z_loss=0.01: the objective objective takes no z_loss"):
        Trainer(load_config(None, QUICK + ["train.z_loss=0.01"]), tmp_path / "run", objective=objective).run()
