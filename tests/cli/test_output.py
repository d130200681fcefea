"""Numbers and times given to the CLI: anything out of range is a usage error (exit 2), never a traceback."""

from __future__ import annotations

import pytest
from support.ops_cli import use_servers

from ingest.cli import main


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    use_servers(monkeypatch, db_url=db_url)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["events", "list", "--since", "99999999999d"], "before the year 1"),
        (["events", "list", "--since", "99999999999w"], "before the year 1"),
        (["events", "list", "--limit", "99999999999999999999"], "at most 9223372036854775807"),
        (["events", "list", "--limit", "0"], "at least 1"),
        (["events", "show", "99999999999999999999"], "at most 9223372036854775807"),
        (["events", "discard", "--yes", "-5"], "at least 1"),
        (["calls", "list", "--since", "99999999999d"], "before the year 1"),
        (["calls", "list", "--limit", "99999999999999999999"], "at most"),
        (["replay", "--rate", "-1", "x.json"], "above 0"),
        (["replay", "--concurrency", "99999999999", "x.json"], "at most 1000"),
    ],
)
def test_out_of_range_input_is_a_usage_error(
    servers: None, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """Each out-of-range value stops argparse with status 2 and a message naming the range."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err


@pytest.mark.parametrize("interval", ["nan", "inf", "1e300"])
def test_unusable_watch_interval_is_refused(servers: None, capsys: pytest.CaptureFixture[str], interval: str) -> None:
    """``ingest queue --watch`` refuses nan, infinities and intervals longer than a day (status 2)."""
    assert main(["queue", "--watch", interval]) == 2
    assert "at most 86400" in capsys.readouterr().err
