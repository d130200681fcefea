"""``python -m worker.dramatiq_cli``: Dramatiq's own command line, logging JSON lines.

``ingest worker`` execs this with Dramatiq's arguments. Left alone, Dramatiq's CLI calls
``logging.basicConfig`` with its plain-text format in the main process, in every worker
process and in every fork. Here it runs with ``--skip-logging`` instead, after the main
process is given the project's JSON handler (``ingest.logs``), which the processes Dramatiq
forks inherit. That handler writes to whatever ``sys.stderr`` is at the time, and in a child
Dramatiq points ``sys.stderr`` at the pipe its parent copies to the real stderr: the lines of
several processes still never mix.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import dramatiq.cli

from ingest.logs import configure_logging
from ingest.settings import Settings


def main(argv: Sequence[str]) -> int:
    configure_logging(Settings.from_env().log_level)
    # Dramatiq restarts itself on SIGHUP with ``os.execvp(sys.argv[0], sys.argv)``: make that
    # this same command rather than this file, which is not executable.
    sys.argv = [sys.executable, "-m", "worker.dramatiq_cli", *argv]
    args = dramatiq.cli.make_argument_parser().parse_args([*argv, "--skip-logging"])  # type: ignore[no-untyped-call]
    return int(dramatiq.cli.main(args))  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
