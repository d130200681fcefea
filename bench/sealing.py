"""What sealing a body costs, against what the endpoint already spends on it.

    .venv/bin/python bench/sealing.py [--rounds 2000]

For the endpoint benchmark's bodies (``bench/_payloads.py``: the 20 KB status update and the
200 KB end-of-call report) and a final transcript event, in one process: CPU µs per body to
parse it with orjson (the baseline: the endpoint parses every body once), to seal it
(zstd, then AES-GCM under a named key, ``ingest.sealing``) and to open it again; the ratio
of sealing to parsing; and the size sealed against the size received. This is the figure
behind the decision not to seal the queued copy on the request path (docs/security.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._payloads import end_of_call_report, status_update  # noqa: E402
from ingest.sealing import Keyring, Purpose, generate_key  # noqa: E402

TRANSCRIPT = orjson.dumps(
    {
        "message": {
            "type": "transcript",
            "transcriptType": "final",
            "role": "user",
            "transcript": "Yes, it's Liam O'Connor, and my mobile is 021 448 9031. " * 6,
            "timestamp": 1_790_000_000_000,
            "call": {"id": "33ac20f6-19cb-4bb2-a2d2-37ac3a048062", "orgId": "b1f3c0de-0000-4000-8000-000000000000"},
        }
    }
)


def cpu_us(action: Callable[[], object], rounds: int) -> float:
    action()
    started = time.process_time()
    for _ in range(rounds):
        action()
    return (time.process_time() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    keyring = Keyring.parse(generate_key())
    bodies = {
        "transcript": TRANSCRIPT,
        "status (20 KB)": status_update(20_000),
        "report (200 KB)": end_of_call_report(200_000, 20_000),
    }
    print(f"{'body':<20}{'bytes':>9}{'sealed':>9}{'parse µs':>10}{'seal µs':>9}{'open µs':>9}{'seal/parse':>12}")
    for name, body in bodies.items():
        rounds = max(20, args.rounds * 2_000 // max(len(body), 2_000))
        sealed = keyring.seal(body, Purpose.EVENT_BODY)
        parse = cpu_us(lambda body=body: orjson.loads(body), rounds)
        seal = cpu_us(lambda body=body: keyring.seal(body, Purpose.EVENT_BODY), rounds)
        opened = cpu_us(lambda sealed=sealed: keyring.open(sealed, Purpose.EVENT_BODY), rounds)
        print(f"{name:<20}{len(body):>9}{len(sealed):>9}{parse:>10.1f}{seal:>9.1f}{opened:>9.1f}{seal / parse:>12.2f}")


if __name__ == "__main__":
    main()
