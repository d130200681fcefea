"""Abuse monitoring settings (``ANOMALY_*``, ``ALLOWED_COUNTRIES``, ``BLOCK_FLAGGED_CALLERS``).

Frozen and read once from the environment, like every concern of ``Settings``. The detectors
(``ingest.ops.anomalies``) read the thresholds; the web process reads ``block_flagged_callers``.
Each variable, its default and why, is documented once: in ``docs/abuse.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers

from ingest.errors import ConfigError
from ingest.settings import env_flag, env_int, env_number


def _countries(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get("ALLOWED_COUNTRIES", "").strip() or "NZ,AU"
    regions = frozenset(part.strip().upper() for part in raw.split(",") if part.strip())
    unknown = sorted(regions - phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise ConfigError(f"ALLOWED_COUNTRIES: {', '.join(unknown)} not regions phonenumbers knows (e.g. NZ, AU)")
    return regions


@dataclass(frozen=True)
class AnomalySettings:
    """When the detectors run, what each counts as unusual, and whether flagged callers are refused."""

    interval_minutes: int = 15
    window_minutes: int = 60  # every detector looks at the trailing window ending at the scan
    baseline_weeks: int = 4  # the same local hour of the week, this many weeks back (28 days)
    baseline_min_weeks: int = 2  # weeks of history a client needs before its baseline is judged
    volume_min_calls: int = 20
    volume_score: float = 5.0
    cost_min: float = 10.0  # in the account's currency (Vapi reports USD)
    cost_score: float = 5.0
    repeat_calls: int = 5  # calls from one caller to one client within the window
    short_call_seconds: float = 10.0
    short_calls: int = 10
    short_call_share: float = 0.5  # of the subject's calls in the window
    allowed_countries: frozenset[str] = frozenset({"NZ", "AU"})
    block_flagged_callers: bool = False
    block_hours: int = 24  # a repeat-caller anomaly blocks for this long after it was last seen

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AnomalySettings:
        return cls(
            interval_minutes=env_int(env, "ANOMALY_INTERVAL_MINUTES", 15, minimum=1),
            window_minutes=env_int(env, "ANOMALY_WINDOW_MINUTES", 60, minimum=5),
            baseline_weeks=env_int(env, "ANOMALY_BASELINE_WEEKS", 4, minimum=1),
            baseline_min_weeks=env_int(env, "ANOMALY_BASELINE_MIN_WEEKS", 2, minimum=1),
            volume_min_calls=env_int(env, "ANOMALY_VOLUME_MIN_CALLS", 20, minimum=1),
            volume_score=env_number(env, "ANOMALY_VOLUME_SCORE", 5.0, minimum=1.0),
            cost_min=env_number(env, "ANOMALY_COST_MIN", 10.0),
            cost_score=env_number(env, "ANOMALY_COST_SCORE", 5.0, minimum=1.0),
            repeat_calls=env_int(env, "ANOMALY_REPEAT_CALLS", 5, minimum=2),
            short_call_seconds=env_number(env, "ANOMALY_SHORT_CALL_SECONDS", 10.0, minimum=1.0),
            short_calls=env_int(env, "ANOMALY_SHORT_CALLS", 10, minimum=2),
            short_call_share=env_number(env, "ANOMALY_SHORT_CALL_SHARE", 0.5),
            allowed_countries=_countries(env),
            block_flagged_callers=env_flag(env, "BLOCK_FLAGGED_CALLERS"),
            block_hours=env_int(env, "BLOCK_FLAGGED_HOURS", 24, minimum=1),
        )
