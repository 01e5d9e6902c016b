"""Joining the processes of a multi-host run (JAX's multi-controller runtime), before any device is touched.

Every process runs the same command; each is told the coordinator's address, the number of processes and its own
id (config section `distributed`), or, on SLURM and other clusters JAX knows, finds them itself (`auto`).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from gptjax.config import ConfigError

_initialized = False


def initialize(dist_cfg) -> None:
    """Calls jax.distributed.initialize when the config (or a cluster scheduler) says there are several processes."""
    global _initialized
    if _initialized:
        return
    explicit = dist_cfg.num_processes > 1
    auto = dist_cfg.auto and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if not explicit and not auto:
        return
    if explicit and not dist_cfg.coordinator_address:
        raise ConfigError("distributed.num_processes > 1 needs distributed.coordinator_address (host:port of "
                          "process 0)")
    if explicit and not 0 <= dist_cfg.process_id < dist_cfg.num_processes:
        raise ConfigError(f"distributed.process_id={dist_cfg.process_id} must be in [0, {dist_cfg.num_processes})")
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        # CPU devices of different processes talk through gloo (GPUs use NCCL without being asked).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = dict(initialization_timeout=dist_cfg.init_timeout, heartbeat_timeout_seconds=dist_cfg.heartbeat_timeout)
    if explicit:
        kwargs.update(coordinator_address=dist_cfg.coordinator_address, num_processes=dist_cfg.num_processes,
                      process_id=dist_cfg.process_id)
    jax.distributed.initialize(**kwargs)
    _initialized = True


def is_main() -> bool:
    """Process 0 writes the run directory's shared files (config, data, metrics); the others only compute."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def fetch(x) -> np.ndarray:
    """A result as a host array, also when parts of it live on other processes' devices. For an array split
    over processes every process must call this (it gathers); replicated and local arrays need no traffic."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
