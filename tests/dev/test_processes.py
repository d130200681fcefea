"""Children of ``ingest dev``: a group of their own, nothing left behind, gone when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest.dev import processes


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return path.read_text()


# A parent that forks a child deaf to SIGTERM, writes both pids, and exits on SIGTERM
# without stopping that child: what a half-stopped Dramatiq would leave behind.
FORKS_A_STRAGGLER = textwrap.dedent(
    """
    import os, signal, sys, time
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    with open(sys.argv[1], "w") as out:
        out.write(f"{os.getpid()} {child}\\n")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        time.sleep(1)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc")
def test_stop_leaves_nothing_a_child_forked(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    child = processes.start([sys.executable, "-c", FORKS_A_STRAGGLER, str(pids)])
    parent, straggler = map(int, wait_for_file(pids).split())
    assert parent == child.pid
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)  # a group of its own: Ctrl-C does not reach it
    assert os.getpgid(straggler) == child.pid

    processes.stop({"parent": child}, timeout=10)

    assert child.returncode == 0  # stopped by its one SIGTERM, not killed
    deadline = time.monotonic() + 5
    while alive(straggler):
        assert time.monotonic() < deadline, "the forked child outlived stop()"
        time.sleep(0.05)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    deaf = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", deaf], stdout=subprocess.PIPE)  # not ours: stop() only kills it
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    processes.stop({"deaf": child}, timeout=0.5)
    assert child.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
    child.stdout.close()


# Starts a child through processes.start, writes its pid, then waits to be killed.
STARTS_A_CHILD = textwrap.dedent(
    """
    import sys, time
    from ingest.dev import processes
    child = processes.start([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(sys.argv[1], "w") as out:
        out.write(f"{child.pid}\\n")
    time.sleep(60)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_children_die_with_ingest_dev_even_when_it_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", STARTS_A_CHILD, str(pids)], start_new_session=True)
    try:
        child = int(wait_for_file(pids))
        assert alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while alive(child):
            assert time.monotonic() < deadline, "the child outlived its killed parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
