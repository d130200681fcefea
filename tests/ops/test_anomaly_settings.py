"""The abuse monitoring's settings (``ingest.ops.anomaly_settings``), read like every other setting."""

from __future__ import annotations

import pytest

from ingest.errors import ConfigError
from ingest.ops.anomaly_settings import AnomalySettings


def test_defaults_are_the_documented_ones() -> None:
    """Unset or blank, each setting is the default docs/abuse.md gives."""
    settings = AnomalySettings.from_env({"ANOMALY_VOLUME_MIN_CALLS": " "})
    assert settings == AnomalySettings()
    assert (settings.interval_minutes, settings.window_minutes, settings.volume_min_calls) == (15, 60, 20)
    assert (settings.short_call_share, settings.allowed_countries) == (0.5, frozenset({"NZ", "AU"}))


def test_values_are_read_whole_numbers_as_integers_thresholds_as_decimals() -> None:
    settings = AnomalySettings.from_env(
        {"ANOMALY_REPEAT_CALLS": "7", "ANOMALY_COST_SCORE": "3.5", "ALLOWED_COUNTRIES": "nz, gb"}
    )
    assert (settings.repeat_calls, settings.cost_score) == (7, 3.5)
    assert settings.allowed_countries == frozenset({"NZ", "GB"})


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("ANOMALY_REPEAT_CALLS", "2.5", "must be an integer"),  # a count is a whole number
        ("ANOMALY_REPEAT_CALLS", "1", "at least 2"),
        ("ANOMALY_WINDOW_MINUTES", "4", "at least 5"),
        ("ANOMALY_VOLUME_SCORE", "lots", "must be a number"),
        ("ANOMALY_VOLUME_SCORE", "0.5", "at least 1"),
        ("ANOMALY_SHORT_CALL_SHARE", "nan", "at least 0"),
        ("ALLOWED_COUNTRIES", "NZ,XX", "XX"),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_the_setting(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        AnomalySettings.from_env({name: raw})
    assert name in str(raised.value)
