"""Checkpoints in the run directory, with orbax: RUN/checkpoints/<step>/{state, config}.

The state is the whole TrainState (parameters, optimizer state, step); the data position needs nothing more,
because batches are a pure function of (seed, step). orbax writes each checkpoint under a temporary name and
renames it when complete, so a save cut short is never mistaken for a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, run_dir: str | Path, *, keep: int = 2, every: int = 0):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        self.every = every
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state, config: dict) -> None:
        """Starts an asynchronous save; training continues while it is written."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        config=ocp.args.JsonSave(config)))

    def restore(self, target, step: int | None = None):
        """Restores the state at `step` (default: latest) into the structure, shapes and shardings of `target`."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return restored.state

    def close(self) -> None:
        """Waits for a save in flight to finish; call before the process exits."""
        self.manager.wait_until_finished()
        self.manager.close()
