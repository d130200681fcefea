"""CPU time of the processes a benchmark run keeps busy, read from ``/proc`` (Linux).

A ``CpuClock`` samples a set of processes at the start and at the end of the measured
interval: the workers (every process of their process group), the Postgres backends
serving the run's database, and Redis (from its own ``INFO cpu``, which counts all of
its threads). A backend that exits during the interval is not counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of one process (all its threads), 0 once it is gone."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def group_members(pgid: int) -> list[int]:
    """Every live process whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def backends(conn: psycopg.Connection[Any]) -> list[int]:
    """The pids of the other backends connected to ``conn``'s database."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return [int(row[0]) for row in rows]


def redis_cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@dataclass
class CpuClock:
    """CPU seconds spent by the workers, the database's backends and Redis since ``start``."""

    worker_pgid: int
    monitor: psycopg.Connection[Any]
    client: redis.Redis
    _start: dict[str, Any] = field(default_factory=dict)

    def _sample(self) -> dict[str, Any]:
        return {
            "worker": {pid: cpu_seconds(pid) for pid in group_members(self.worker_pgid)},
            "postgres": {pid: cpu_seconds(pid) for pid in backends(self.monitor)},
            "redis": redis_cpu(self.client),
        }

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        """Seconds per role since ``start`` (a process that appeared meanwhile counts from 0)."""
        end = self._sample()
        spent = {"redis": end["redis"] - self._start["redis"]}
        for role in ("worker", "postgres"):
            before = self._start[role]
            spent[role] = sum(seconds - before.get(pid, 0.0) for pid, seconds in end[role].items())
        return spent
