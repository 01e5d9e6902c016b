"""Joining the processes of a multi-host run (JAX's multi-controller runtime), before any device is touched.

Every process runs the same command; each is told the coordinator's address, the number of processes and its own
id (config section `distributed`), or, on SLURM and other clusters JAX knows, finds them itself (`auto`).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Callable

import jax
import numpy as np

from gptjax.config import ConfigError

_initialized = False


def initialize(dist_cfg) -> None:
    """Calls jax.distributed.initialize when the config (or a cluster scheduler) says there are several processes.

    A process that dies is noticed by the others through PeerWatch; one that hangs instead, by the coordinator
    after distributed.heartbeat_timeout seconds without a heartbeat (JAX then aborts the others)."""
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


class PeerWatch:
    """Notices at once when another process of the run dies, and ends this one with one line.

    Left to JAX, a survivor waits in its next collective until the coordinator declares the dead process gone
    (distributed.heartbeat_timeout seconds), then aborts with a native stack dump. Here every process keeps a TCP
    connection to process 0 (its address shared through JAX's key-value store): the kernel closes a dead
    process's connections whatever killed it, so the survivors learn of it at once; a process that ends in order
    says 'bye' first. A host that vanishes without closing anything (power loss) is still left to the heartbeat.

        watch = PeerWatch(lambda who: f"restart ... to resume from ...")   # after initialize()
        ...
        watch.close()   # an orderly end, by success or by an error this process reports itself
    """

    KEY = "gptjax/peer_watch"

    def __init__(self, advice: Callable[[], str], connect_timeout_s: float = 300):
        self.advice, self.closing, self.connections = advice, False, []
        if jax.process_count() <= 1:
            return
        from jax._src import distributed as jax_distributed  # the key-value store has no public API

        client = jax_distributed.global_state.client
        if jax.process_index() == 0:
            self.server = socket.create_server(("", 0))
            host = jax_distributed.global_state.coordinator_address.rpartition(":")[0]
            client.key_value_set(self.KEY, f"{host}:{self.server.getsockname()[1]}")
            threading.Thread(target=self._accept, daemon=True, name="gptjax-peer-watch").start()
        else:
            host, _, port = client.blocking_key_value_get(self.KEY, int(connect_timeout_s * 1000)).rpartition(":")
            connection = socket.create_connection((host.strip("[]"), int(port)), timeout=connect_timeout_s)
            connection.settimeout(None)
            connection.sendall(f"{jax.process_index()}\n".encode())
            self.connections.append(connection)
            threading.Thread(target=self._watch, args=(connection, "process 0"), daemon=True,
                             name="gptjax-peer-watch").start()

    def _accept(self) -> None:
        for _ in range(jax.process_count() - 1):
            connection, _ = self.server.accept()
            who = connection.makefile("rb").readline().decode().strip()
            self.connections.append(connection)
            threading.Thread(target=self._watch, args=(connection, f"process {who}"), daemon=True,
                             name="gptjax-peer-watch").start()

    def _watch(self, connection: socket.socket, who: str) -> None:
        try:
            said = connection.recv(16)
        except OSError:
            said = b""
        if said.startswith(b"bye") or self.closing:
            return
        print(f"error: lost contact with {who} of this multi-host run (it died, or its host went down); "
              f"{self.advice()}", file=sys.stderr, flush=True)
        os._exit(1)  # not by raising: the main thread is stuck in a collective that the dead process never joins

    def close(self) -> None:
        self.closing = True
        for connection in self.connections:
            try:
                connection.sendall(b"bye")
                connection.close()
            except OSError:
                pass


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
