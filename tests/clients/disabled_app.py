"""An app configured with enabled = false: the official PyPI SDK gets 403 (PusherForbidden) for
its HTTP API requests, and its WebSocket clients pusher:error 4003 and close 4003, while the
enabled app on the same server is served. corecast runs with apps 1 (app-key, app-secret) and 2
(app2-key, app2-secret, enabled = false).

Usage: disabled_app.py PORT
"""
import asyncio
import json
import sys

import pusher
import websockets

PORT = int(sys.argv[1])
enabled = pusher.Pusher(app_id="1", key="app-key", secret="app-secret", host="127.0.0.1", port=PORT, ssl=False)
disabled = pusher.Pusher(app_id="2", key="app2-key", secret="app2-secret", host="127.0.0.1", port=PORT, ssl=False)


def forbidden(call, what):
    try:
        call()
    except pusher.errors.PusherForbidden as e:
        assert "disabled" in str(e).lower(), f"{what}: {e}"
        return
    raise AssertionError(f"{what}: not refused")


async def main():
    assert enabled.trigger("news", "e", {"ok": True}) == {}
    forbidden(lambda: disabled.trigger("news", "e", {"ok": False}), "trigger")
    forbidden(lambda: disabled.trigger_batch([{"channel": "news", "name": "e", "data": "{}"}]), "trigger_batch")
    forbidden(lambda: disabled.channels_info(), "channels_info")
    forbidden(lambda: disabled.channel_info("news"), "channel_info")
    assert enabled.channels_info() == {"channels": {}}

    async with websockets.connect(f"ws://127.0.0.1:{PORT}/app/app2-key?protocol=7&client=py&version=1") as ws:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["event"] == "pusher:error" and msg["data"]["code"] == 4003, msg
        try:
            await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("the connection stayed open")
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 4003, e
    async with websockets.connect(f"ws://127.0.0.1:{PORT}/app/app-key?protocol=7&client=py&version=1") as ws:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["event"] == "pusher:connection_established", msg
    print("disabled app: ok")


asyncio.run(main())
