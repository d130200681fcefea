"""The processes ``ingest dev`` starts: each in a process group of its own, each gone when we are.

A child in the terminal's process group gets Ctrl-C straight from the terminal, and then
``ingest dev``'s SIGTERM as well: Dramatiq takes a second signal as "kill the worker process
now", which can leave it half stopped, and the embedded Redis would quit before the
workers that still talk to it. So every child gets a group of its own: Ctrl-C reaches
``ingest dev`` alone, which stops the children in order, one SIGTERM each, and then clears
each child's group so that nothing it forked outlives it. Should ``ingest dev`` itself be
killed, the kernel sends its children SIGTERM (Linux's parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _own_group_dying_with_parent() -> None:
    """Run in the child between fork and exec: a new process group, SIGTERM when the parent dies."""
    os.setpgid(0, 0)
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start(command: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` in a process group of its own that is sent SIGTERM should we die."""
    return subprocess.Popen(
        list(command),
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=_own_group_dying_with_parent,  # not thread-safe: ingest dev starts children from one thread
    )


def clear_group(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left in ``process``'s group (what it forked and did not stop)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def stop(children: Mapping[str, subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM to every child at once; a child not gone ``timeout`` seconds later is killed with its group."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name, child in children.items():
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("process did not stop in time; killing it", extra={"child": name})
            child.kill()
        clear_group(child)
        child.wait()
