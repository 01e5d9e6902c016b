import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from jax.sharding import PartitionSpec

from conftest import REPO
from gptjax.config import ConfigError, load_config
from gptjax.sharding import make_mesh, partition_spec


def test_mesh_that_does_not_fit_the_devices_names_the_count():
    import jax

    n = jax.device_count()
    with pytest.raises(ConfigError, match=rf"needs {2 * n} devices, but there are {n}; e.g. mesh.data=-1"):
        make_mesh(dict(data=2 * n, fsdp=1, tensor=1))
    with pytest.raises(ConfigError, match="at most one -1"):
        make_mesh(dict(data=-1, fsdp=-1, tensor=1))
    assert dict(make_mesh(dict(data=-1, fsdp=1, tensor=1)).shape) == {"data": n, "fsdp": 1, "tensor": 1}


def test_rules_map_logical_axes_and_replicate_what_does_not_divide():
    mesh = SimpleNamespace(shape={"data": 2, "fsdp": 4, "tensor": 2})
    assert partition_spec(("embed", "mlp"), (64, 256), mesh) == PartitionSpec("fsdp", "tensor")
    assert partition_spec(("vocab", "embed"), (65, 64), mesh) == PartitionSpec(None, "fsdp")  # 65 % 2 != 0
    assert partition_spec(("batch", None), (16, 33), mesh) == PartitionSpec(("data", "fsdp"), None)
    assert partition_spec(("norm",), (64,), mesh) == PartitionSpec(None)
    single = SimpleNamespace(shape={"data": 8, "fsdp": 1, "tensor": 1})
    assert partition_spec(("batch", None), (16, 33), single) == PartitionSpec("data", None)


def test_batch_that_does_not_split_over_the_data_parallel_devices(tmp_path):
    script = ("from gptjax.config import load_config\nfrom gptjax.trainer import train\n"
              "train(load_config(None, ['train.batch_size=12', 'mesh.data=8', 'data.max_chars=100000',"
              " 'train.steps=2']), r'%s')\n" % (tmp_path / "run"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                                 "PJRT_NPROC": "16"})
    assert "train.batch_size=12 (per micro-batch: 12) does not split over the 8 data-parallel devices" in result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_same_losses_and_parameters_on_every_mesh():
    """20 steps on 1 device, data=8, fsdp=8, data=2 x fsdp=4, fsdp=4 x tensor=2 (8 simulated CPU devices).

    Tolerance: 1e-5 on losses, 2e-5 on parameters (of size ~0.02-1). Only the order of float32 additions differs
    (sharded matmuls add partial sums, then all-reduce); Adam divides by sqrt(v), so a near-zero gradient can turn
    such a rounding difference into an update difference of up to lr, which bounds the drift over 20 steps."""
    result = subprocess.run([sys.executable, "tests/scripts/sharded_equivalence.py", "20"], capture_output=True,
                            text=True, cwd=REPO, timeout=600,
                            env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                                 "PJRT_NPROC": "16"})  # collectives deadlock on 2 cores with fewer PJRT threads
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    baseline = runs.pop("baseline")
    muon = runs.pop("muon")
    assert len(runs) == 7
    for name, run in runs.items():
        assert max(abs(a - b) for a, b in zip(run["losses"], baseline)) < 1e-5, name
        assert run["max_param_diff"] < 2e-5, name
    # optim.name=muon on a mesh (the sharded matrices orthogonalized by XLA's collectives): the same training
    sharded = muon["fsdp=4 tensor=2"]
    assert muon["baseline"] != baseline  # another optimizer indeed
    assert max(abs(a - b) for a, b in zip(sharded["losses"], muon["baseline"])) < 1e-5
    assert sharded["max_param_diff"] < 2e-5


def test_mesh_config_defaults_to_all_devices_data_parallel():
    cfg = load_config(None, [])
    assert (cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor) == (-1, 1, 1)
