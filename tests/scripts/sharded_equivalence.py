"""Trains a tiny model for 20 steps on several meshes over 8 simulated CPU devices and prints, as JSON, each mesh's
losses and its largest parameter difference from the single-device run. Run by tests/test_sharding.py in a fresh
process (the device count must be set before JAX starts)."""

import json
import sys

import jax
import numpy as np

from gptjax.config import load_config
from gptjax.model import ModelConfig
from gptjax.sharding import batch_sharding, make_mesh
from gptjax.state import setup
from gptjax.step import make_train_step

MESHES = {"1 device": None, "data=8": (8, 1, 1), "fsdp=8": (1, 8, 1), "data=2 fsdp=4": (2, 4, 1),
          "fsdp=4 tensor=2": (1, 4, 2)}


def run(mesh_shape, steps: int, grad_accum: int, scan_layers: bool = False, optimizer: str = "adamw"):
    cfg = load_config(None, ["model.num_layers=2", "model.num_heads=4", "model.d_model=64", "model.block_size=32",
                             "train.batch_size=16", f"train.grad_accum={grad_accum}", "optim.warmup_steps=5",
                             f"model.scan_layers={scan_layers}", f"optim.name={optimizer}"])
    if mesh_shape is None:
        mesh = make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    else:
        mesh = make_mesh(dict(zip(("data", "fsdp", "tensor"), mesh_shape)))
    built = setup(cfg, ModelConfig.from_config(cfg.model, vocab_size=96), mesh)
    step = make_train_step(built.graphdef, built.tx, built.schedule, grad_accum=grad_accum, seed=0,
                           state_shardings=built.shardings, batch_sharding=batch_sharding(mesh))
    state, losses = built.init(0), []
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = rng.integers(0, 96, (16, 33)).astype(np.int32)
        state, metrics = step(state, jax.device_put(batch, batch_sharding(mesh)))
        losses.append(float(metrics["loss"]))
    return losses, [np.asarray(x) for x in jax.tree.leaves(state.params)]


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    assert jax.device_count() == 8, jax.devices()
    base_losses, base_params = run(None, steps, 1)
    out = {}
    for name, shape in MESHES.items():
        losses, params = run(shape, steps, 1)
        out[name] = {"losses": losses, "max_param_diff": max(float(np.max(np.abs(a - b)))
                                                             for a, b in zip(params, base_params))}
    losses, params = run((2, 4, 1), steps, 2)  # gradient accumulation on a mesh
    out["data=2 fsdp=4, 2 micro-batches"] = {"losses": losses, "max_param_diff": max(
        float(np.max(np.abs(a - b))) for a, b in zip(params, base_params))}
    losses, params = run((1, 4, 2), steps, 1, scan_layers=True)  # the layer loop compiled once, on a mesh
    out["fsdp=4 tensor=2, scan_layers"] = {"losses": losses, "max_param_diff": max(
        float(np.max(np.abs(a - b))) for a, b in zip(params, base_params))}
    out["baseline"] = base_losses
    # Muon: its Newton-Schulz iterations on matrices split over fsdp and tensor, against Muon on one device
    muon_losses, muon_params = run(None, steps, 1, optimizer="muon")
    losses, params = run((1, 4, 2), steps, 1, optimizer="muon")
    out["muon"] = {"baseline": muon_losses, "fsdp=4 tensor=2": {"losses": losses, "max_param_diff": max(
        float(np.max(np.abs(a - b))) for a, b in zip(params, muon_params))}}
    print("RESULT " + json.dumps(out))
