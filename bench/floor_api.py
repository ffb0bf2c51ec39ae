"""The API floor of item 4: a minimal aiohttp app answering a fixed body to any POST.

    python -m bench.floor_api --port PORT

Issue 11 asks for the push server's CPU per unbatched call within 1.3× of
this. It runs as its own process on the same event loop the push server picks
(uvloop when installed) with the same collector settings, and is called by the
same PushClient loop (the pusher's ``calls``): it answers ``{"result":null}``,
which push_client reads as a successful ``send_to_client``. Everything the
push server does beyond HTTP parsing and writing (routing, signature, nonce,
decoding, checks, the backend, middlewares) is what the ratio measures.
"""

from __future__ import annotations

import argparse
import gc

from aiohttp import web

from push_server.serve import new_event_loop

BODY = b'{"result":null}'


async def _fixed(request: web.Request) -> web.Response:
    # Read the body as any handler must, so the request is consumed the same way.
    await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def _settle_gc(app: web.Application) -> None:
    # The push server's settings (push_server/serve.py), so the collector is not the difference.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{tail:.*}", _fixed)
    app.on_startup.append(_settle_gc)
    loop = new_event_loop("auto")
    web.run_app(app, loop=loop, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
