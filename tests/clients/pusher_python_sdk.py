"""The official PyPI `pusher` SDK against corecast: it signs channel and presence authorization
for a Python `websockets` client and publishes over the HTTP API.

Usage: pusher_python_sdk.py PORT. Exits non-zero on the first mismatch.
"""
import asyncio
import json
import sys

import pusher
import websockets

PORT = int(sys.argv[1])
sdk = pusher.Pusher(app_id="1", key="app-key", secret="app-secret", host="127.0.0.1", port=PORT, ssl=False)


async def recv_event(ws, name, timeout=5):
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg["event"] == name:
            return msg


async def main():
    url = f"ws://127.0.0.1:{PORT}/app/app-key?protocol=7&client=python&version=1.0"
    async with websockets.connect(url) as ws:
        est = await recv_event(ws, "pusher:connection_established")
        socket_id = json.loads(est["data"])["socket_id"]

        auth = sdk.authenticate(channel="private-py", socket_id=socket_id)
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "private-py", "auth": auth["auth"]}}))
        ok = await recv_event(ws, "pusher_internal:subscription_succeeded")
        assert ok["channel"] == "private-py", ok

        presence = sdk.authenticate(channel="presence-py", socket_id=socket_id,
                                    custom_data={"user_id": "py-1", "user_info": {"lang": "python"}})
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
            "channel": "presence-py", "auth": presence["auth"], "channel_data": presence["channel_data"]}}))
        joined = await recv_event(ws, "pusher_internal:subscription_succeeded")
        members = json.loads(joined["data"])["presence"]
        assert members["count"] == 1 and members["hash"]["py-1"] == {"lang": "python"}, members

        sdk.trigger(["private-py", "presence-py"], "greeting", {"text": "hello from the SDK"})
        for _ in range(2):
            ev = await recv_event(ws, "greeting")
            assert json.loads(ev["data"]) == {"text": "hello from the SDK"}, ev

        # socket_id exclusion: the sender does not get its own event.
        sdk.trigger("private-py", "excluded", {}, socket_id=socket_id)
        sdk.trigger("private-py", "included", {})
        ev = await recv_event(ws, "included")
        assert ev["event"] == "included"
    print("python sdk: ok")


asyncio.run(main())
