"""Per-app limits, each answered with Pusher's status or error code. corecast runs with an app
(id 1) configured: max_channels_per_connection = 2, max_event_bytes = 100,
max_api_requests_per_second = 4, client_events = true.

Usage: app_limits.py PORT
"""
import asyncio
import json
import sys

import pusher
import websockets

PORT = int(sys.argv[1])
sdk = pusher.Pusher(app_id="1", key="app-key", secret="app-secret", host="127.0.0.1", port=PORT, ssl=False)


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def main():
    ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/app/app-key?protocol=7&client=py&version=1")
    sid = json.loads((await recv(ws))["data"])["socket_id"]
    for ch in ["private-a", "private-b", "private-c"]:
        auth = sdk.authenticate(channel=ch, socket_id=sid)["auth"]
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": ch, "auth": auth}}))
    assert (await recv(ws))["event"] == "pusher_internal:subscription_succeeded"
    assert (await recv(ws))["event"] == "pusher_internal:subscription_succeeded"
    third = await recv(ws)
    assert third["event"] == "pusher:subscription_error" and third["data"]["type"] == "LimitReached", third

    # A client event over the payload limit: pusher:error, not relayed.
    await ws.send(json.dumps({"event": "client-big", "channel": "private-a", "data": "x" * 200}))
    err = await recv(ws)
    assert err["event"] == "pusher:error", err

    # An HTTP event over the payload limit: 413.
    try:
        sdk.trigger("private-a", "e", "x" * 101)
        raise AssertionError("oversize data accepted")
    except pusher.errors.PusherBadStatus as e:
        assert "413" in str(e) or "too" in str(e).lower(), e

    # The HTTP API rate: 4 per second for the app (split over the cores): of 12 quick requests
    # at most 8 pass (the burst may span two seconds).
    statuses = []
    for _ in range(12):
        try:
            sdk.trigger("private-a", "e", "ok")
            statuses.append(200)
        except pusher.errors.PusherBadStatus as e:
            statuses.append(429 if "429" in str(e) else str(e))
    assert statuses.count(429) >= 4, statuses
    assert all(s in (200, 429) for s in statuses), statuses
    await ws.close()
    print("app limits: ok")


asyncio.run(main())
