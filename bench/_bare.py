"""The baseline: a bare Starlette app that reads the body, parses it with orjson and answers 200.

Served exactly like ``ingest web`` serves ours (``ingest/cli/serve.py``): uvicorn, one worker
process, uvloop, httptools, no access log, no uvicorn logging configuration.

    python bench/_bare.py --host 127.0.0.1 --port 8101
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ACK = b'{"ok":true}'


async def receive(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ACK, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/webhooks/vapi", receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
