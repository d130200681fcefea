"""The README's local path, run exactly as printed: start, replay, the ops commands, stop.

So the README cannot drift from the code: the "Try it" block is read from README.md and
each line run as a shell would, from the repository's root, against a stack started by
the block's first line with nothing configured (embedded Postgres and Redis).
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from support.stack import ROOT, Stack, assert_all_stopped

from ingest.dev.embedded import _free_port

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
BOOKING = "44447e38-9fd3-4025-bc93-2132b1b437d0"


def try_it_block() -> list[str]:
    """The commands of the README's "Try it" block, comments dropped."""
    text = README.read_text()
    block = re.search(r"\*\*Try it\.\*\*.*?```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no 'Try it' block"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def settle(env: dict[str, str], timeout: float = 120.0) -> dict[str, int]:
    """Wait until ``ingest queue --json`` shows nothing queued, pending or waiting; its event counts."""
    deadline = time.monotonic() + timeout
    while True:
        done = run(".venv/bin/ingest queue --json", env)
        assert done.returncode == 0, done.stderr
        snapshot = orjson.loads(done.stdout)
        queues, events = snapshot["queues"], snapshot["events"]
        if all(q["ready"] == 0 and q["in_flight"] == 0 for q in queues) and events["pending"] == events["waiting"] == 0:
            return events
        assert time.monotonic() < deadline, snapshot
        time.sleep(1)


def test_the_readme_local_path_works_as_printed(tmp_path: Path) -> None:
    """Started in the background as printed, the stack takes the replay, answers every command, stops on kill -INT."""
    if not (ROOT / ".venv" / "bin" / "ingest").exists():
        pytest.skip("the README's commands use .venv/bin/ingest (scripts/install makes it)")
    start, *commands, stop = try_it_block()
    assert start == "./scripts/start &"
    assert stop == "kill -INT %1"
    data_dir, port = tmp_path / "data", _free_port()
    # A background job of a non-interactive shell starts with SIGINT ignored: kill -INT must still stop it.
    stack = Stack(data_dir, port, command=shlex.split(start.removesuffix("&")), sigint_ignored=True)
    try:
        stack.banner()
        env = stack.env
        outputs = {}
        for command in commands:
            done = run(command, env)  # replay exits non-zero when any delivery was not accepted
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs[" ".join(command.split()[1:3])] = done.stdout
            if command.split()[1] == "replay":
                events = settle(env)
                assert events["failed"] == 0
        assert BOOKING in outputs["calls list"]
        assert "+64211234567" not in outputs["calls list"]  # the booking's caller, masked in listings
        assert "applied" in outputs["events list"]
        assert BOOKING in outputs["calls show"]
        assert (data_dir / "stack.json").exists()
    finally:
        code = stack.stop(signal.SIGINT)
    assert code == 0, stack.log_tail()
    assert not (data_dir / "stack.json").exists()
    assert_all_stopped(data_dir, port, f"redis://127.0.0.1:{(data_dir / 'redis' / 'port').read_text().strip()}/0")
