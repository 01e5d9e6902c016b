"""Host memory for training on a CPU: keep the step's buffers instead of page-faulting them in every step.

XLA's CPU runtime allocates each step's temporaries (tens of MB for a small model, GBs for GPT-2 small) with
malloc and frees them when the step ends. Left to its defaults, glibc hands large freed blocks back to the kernel,
so the next step touches fresh pages and takes a page fault for every 4 KiB of them. Measured with
`python -m gptjax.bench` on a 2-core machine: about 13,000 faults per step for the baby Shakespeare model (30% of
its step) and 600,000 to 1,000,000 for GPT-2 small at 1 x 1024 tokens (15-20% of its step); docs/benchmarks.md.

Three glibc tunables fix it: large blocks stay in malloc's heap (mmap_max=0), freed memory is kept for the next
step (trim_threshold), and the heap is backed by transparent huge pages (hugetlb=1: one fault per 2 MiB where
the kernel allows THP, its default "madvise" mode included). Tunables are read only when a process starts, so the
command-line tools (train, bench) re-execute themselves once with them set, before JAX is imported. A notebook or
another program calling gptjax.train() in its own process keeps its allocator as it is; start it with
GLIBC_TUNABLES=<TUNABLES below> to get the same effect. GPTJAX_HOST_MALLOC=default turns the re-execution off.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
OPT_OUT = "GPTJAX_HOST_MALLOC"


def tunables_env(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None where there is nothing to do (not glibc, opted out, or the
    tunables are already set: also what stops a second re-execution)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or environ.get(OPT_OUT) == "default":
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:  # ours, or the user's own choice: either way, leave it
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{current}:{TUNABLES}" if current else TUNABLES
    return env


def reexec_with_tunables() -> None:
    """Replaces this process by the same command with the tunables set (see the module docstring); returns only
    where nothing needs doing. Call it first thing in a command-line entry point, before JAX starts."""
    env = tunables_env(dict(os.environ))
    if env is None or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def advice() -> str | None:
    """A one-line tip for a process that trains on a CPU without the tunables (a notebook, a script of its own), or
    None where they are set or do not apply."""
    env = tunables_env(dict(os.environ))
    if env is None:
        return None
    return (f"note: on a CPU, starting Python with GLIBC_TUNABLES={env['GLIBC_TUNABLES']} makes each step faster "
            f"(no page faults for its buffers; see gptjax/hostmem.py). `python -m gptjax.train` sets it itself.")
