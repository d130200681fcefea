"""The demo's calls: the recorded fixtures, renamed and moved in time so that they end now."""

from __future__ import annotations

import re
import time
from collections import defaultdict

import orjson

from ingest.dev import demo
from ingest.dev.demo import shift

ISO = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z")
EPOCH_MS = re.compile(rb"(?<![0-9A-Za-z.])1[0-9]{12}(?![0-9])")


def test_shift_moves_every_instant_and_nothing_else() -> None:
    """Epoch-ms numbers (in values and URLs) and ISO strings move by the same amount; other numbers stay."""
    body = (
        b'{"message":{"timestamp":1784066404157,"time":1784066404157.5,"endedAt":"2026-07-14T22:00:04.117Z",'
        b'"startedAt":"2026-07-14T21:59:58Z","url":"https://x/e0b9-1784066432860-mono.wav",'
        b'"n":1000000000000,"phone":"+64215550147"}}'
    )
    [moved] = shift.shift([body], -86_401_000)
    assert moved == (
        b'{"message":{"timestamp":1783980003157,"time":1783980003157.5,"endedAt":"2026-07-13T22:00:03.117Z",'
        b'"startedAt":"2026-07-13T21:59:57Z","url":"https://x/e0b9-1783980031860-mono.wav",'
        b'"n":1000000000000,"phone":"+64215550147"}}'
    )
    assert shift.shift([moved], 86_401_000) == [body]


def test_demo_calls_end_a_minute_ago_and_stay_faithful() -> None:
    """Each call's last delivery is a minute old, no recorded instant is left, and shifting back gives the fixture."""
    before = int(time.time() * 1000)
    prepared = demo.prepare()
    after = int(time.time() * 1000)
    by_file: dict[str, list[bytes]] = defaultdict(list)
    for label, body in prepared.bodies:
        by_file[label.rsplit(":", 1)[0] if label.endswith(tuple("0123456789")) else label].append(body)
    names = [*demo.CALLS, demo.FAILING]
    assert sorted(by_file) == sorted(str(demo.DEMO_DIR / name) for name in names)
    for name, new_id in zip(names, prepared.all_ids, strict=True):
        recorded = [line for line in (demo.DEMO_DIR / name).read_bytes().split(b"\n") if line.strip()]
        moved = by_file[str(demo.DEMO_DIR / name)]
        last = max(orjson.loads(body)["message"]["timestamp"] for body in moved)
        assert before - shift.ENDED_AGO_MS - 1000 < last <= after - shift.ENDED_AGO_MS, name
        delta = last - max(orjson.loads(body)["message"]["timestamp"] for body in recorded)
        old_id = orjson.loads(recorded[0])["message"]["call"]["id"].encode()
        back = [body.replace(new_id.encode(), old_id) for body in shift.shift(moved, -delta)]
        assert back == recorded, name
        instants = {m for body in recorded for m in [*ISO.findall(body), *EPOCH_MS.findall(body)]}
        assert instants, name
        assert not any(instant in body for instant in instants for body in moved), name
