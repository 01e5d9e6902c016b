"""Joining the processes of a multi-host run (JAX's multi-controller runtime), before any device is touched.

Every process runs the same command; each is told the coordinator's address, the number of processes and its own
id (config section `distributed`), or, on SLURM and other clusters JAX knows, finds them itself (`auto`).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
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
        watch.close(error)   # an orderly end: success (None), or the error this process stops on
    """

    KEY = "gptjax/peer_watch"
    HELLO = "gptjax-peer"
    GRACE_S = 3.0  # a peer's error waits this long for this process to stop on its own (often the same error)
    DRAIN_S = 15.0  # process 0, stopping, waits this long for the others to go first: it hosts the coordinator,
    #                whose end makes JAX abort every process still running

    def __init__(self, advice: Callable[[], str], connect_timeout_s: float = 60):
        self.advice, self.closing = advice, False
        self.connections: list[socket.socket] = []
        self.watchers: list[threading.Thread] = []
        self.all_connected = threading.Event()  # process 0: every other process has connected
        if jax.process_count() <= 1:
            return
        self.index = jax.process_index()
        try:
            self._connect(connect_timeout_s)
        except Exception as e:  # noqa: BLE001  (the private API moved, a firewall): JAX's own heartbeat remains
            print(f"warning: cannot watch the other processes ({type(e).__name__}: {e}); a dead process is noticed "
                  "only after distributed.heartbeat_timeout seconds", file=sys.stderr)

    def _connect(self, connect_timeout_s: float) -> None:
        from jax._src import distributed as jax_distributed  # the key-value store has no public API

        client = jax_distributed.global_state.client
        if self.index == 0:
            host = jax_distributed.global_state.coordinator_address.rpartition(":")[0]
            try:  # where the coordinator listens, which the others already reach; else every interface
                self.server = socket.create_server((host.strip("[]"), 0))
            except OSError:
                self.server = socket.create_server(("", 0))
            client.key_value_set(self.KEY, f"{host}:{self.server.getsockname()[1]}")
            threading.Thread(target=self._accept, daemon=True, name="gptjax-peer-watch").start()
        else:
            host, _, port = client.blocking_key_value_get(self.KEY, int(connect_timeout_s * 1000)).rpartition(":")
            connection = socket.create_connection((host.strip("[]"), int(port)), timeout=connect_timeout_s)
            connection.settimeout(None)
            connection.sendall(f"{self.HELLO} {self.index}\n".encode())
            self._add(connection, "process 0")

    def _add(self, connection: socket.socket, who: str) -> None:
        watcher = threading.Thread(target=self._watch, args=(connection, who), daemon=True,
                                   name="gptjax-peer-watch")
        watcher.start()
        self.connections.append(connection)
        self.watchers.append(watcher)

    def _accept(self) -> None:
        waiting = set(range(1, jax.process_count()))
        while waiting:
            connection, _ = self.server.accept()
            connection.settimeout(30)
            hello = _read_line(connection).split()
            if len(hello) != 2 or hello[0] != self.HELLO or not hello[1].isdigit() or int(hello[1]) not in waiting:
                connection.close()  # not one of this run's processes (a port scan, a stray client)
                continue
            connection.settimeout(None)
            waiting.discard(int(hello[1]))
            self._add(connection, f"process {hello[1]}")
        self.server.close()
        self.all_connected.set()

    def _watch(self, connection: socket.socket, who: str) -> None:
        try:
            said = connection.recv(4096).decode("utf-8", "replace")
        except OSError:
            said = ""
        if said == "bye" or self.closing:
            return
        if said.startswith("stop "):  # it stopped on an error, or process 0 relays another's end
            deadline = time.monotonic() + self.GRACE_S
            while time.monotonic() < deadline and not self.closing:
                time.sleep(0.05)
            if self.closing:  # this process is stopping on its own error: it says so itself
                return
            reason = said[len("stop "):]
        else:
            reason = f"lost contact with {who} of this multi-host run (it died, or its host went down)"
        self._tell_the_others(reason, skip=connection)
        print(f"error: {reason}; {self.advice()}", file=sys.stderr, flush=True)
        os._exit(1)  # not by raising: the main thread is stuck in a collective that the other never joins

    def _tell_the_others(self, reason: str, skip: socket.socket | None = None) -> None:
        """Process 0 passes a process's end on to the rest and waits for them to go before it does."""
        self.closing = True
        if self.index == 0:  # a process still starting would otherwise miss the news, and abort later
            self.all_connected.wait(self.DRAIN_S)
        for connection in list(self.connections):
            if connection is not skip:
                try:
                    connection.sendall(f"stop {reason}".encode())
                except OSError:
                    pass
        if self.index == 0:
            deadline = time.monotonic() + self.DRAIN_S
            for watcher in list(self.watchers):
                if watcher is not threading.current_thread():
                    watcher.join(max(0.0, deadline - time.monotonic()))

    def close(self, error: BaseException | None = None) -> None:
        """Says goodbye to the others: 'bye' after success; after an error, the error (and process 0 waits for the
        others to stop first)."""
        if jax.process_count() <= 1:
            return
        if error is None:
            self.closing = True
            for connection in self.connections:
                try:
                    connection.sendall(b"bye")
                except OSError:
                    pass
        else:
            text = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
            self._tell_the_others(f"process {self.index} of this multi-host run stopped: {text[:2000]}")
        for connection in self.connections:
            connection.close()


def _read_line(connection: socket.socket, limit: int = 64) -> str:
    """One line, a byte at a time: nothing after it is consumed (the 'bye' that may follow is the watcher's)."""
    line = b""
    try:
        while len(line) < limit and not line.endswith(b"\n"):
            byte = connection.recv(1)
            if not byte:
                break
            line += byte
    except OSError:
        return ""
    return line.decode("ascii", "replace")


def leave(status: int) -> None:
    """Ends a process of a multi-process run that failed, now: at a normal exit JAX's runtime would wait at its
    shutdown barrier for the other processes, which are stopping on their own (PeerWatch told them), and then
    abort this one with a native stack dump."""
    if status and jax.process_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


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
