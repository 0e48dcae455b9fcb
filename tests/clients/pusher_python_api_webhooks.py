"""The PyPI SDK's HTTP API helpers and webhook validation against corecast.

Usage: pusher_python_api_webhooks.py PORT HOOK_PORT. corecast must run with
--webhook-url http://127.0.0.1:HOOK_PORT/hooks. A receiver here checks every webhook with the
SDK's validate_webhook (key, signature, time window) and records the events.
"""
import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pusher
import websockets

PORT, HOOK_PORT = int(sys.argv[1]), int(sys.argv[2])
sdk = pusher.Pusher(app_id="1", key="app-key", secret="app-secret", host="127.0.0.1", port=PORT, ssl=False)
events, invalid = [], []


class Hooks(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        ok = sdk.validate_webhook(key=self.headers.get("X-Pusher-Key"), signature=self.headers.get("X-Pusher-Signature"), body=body)
        if ok is None or self.headers.get("Content-Type") != "application/json":
            invalid.append(body)
        else:
            events.extend(ok["events"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


threading.Thread(target=ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Hooks).serve_forever, daemon=True).start()


async def recv(ws, name):
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if msg["event"] == name:
            return msg


async def connect(channel, user=None):
    ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/app/app-key?protocol=7&client=py&version=1")
    sid = json.loads((await recv(ws, "pusher:connection_established"))["data"])["socket_id"]
    data = {"channel": channel}
    if channel.startswith("presence-"):
        auth = sdk.authenticate(channel=channel, socket_id=sid, custom_data={"user_id": user})
        data.update(auth=auth["auth"], channel_data=auth["channel_data"])
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
    await recv(ws, "pusher_internal:subscription_succeeded")
    return ws, sid


async def wait_for(pred, what):
    for _ in range(100):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"webhook never came: {what}; got {events}")


def has(name, channel, **extra):
    return any(e["name"] == name and e["channel"] == channel and all(e.get(k) == v for k, v in extra.items()) for e in events)


async def main():
    a, _ = await connect("presence-py", "u1")
    b, _ = await connect("presence-py", "u2")
    c, _ = await connect("news")
    await wait_for(lambda: has("channel_occupied", "presence-py"), "channel_occupied presence-py")
    await wait_for(lambda: has("member_added", "presence-py", user_id="u2"), "member_added u2")
    await wait_for(lambda: has("channel_occupied", "news"), "channel_occupied news")

    info = sdk.channels_info(prefix_filter="presence-", attributes=["user_count"])
    assert info == {"channels": {"presence-py": {"user_count": 2}}}, info
    info = sdk.channel_info("presence-py", attributes=["user_count", "subscription_count"])
    assert info == {"occupied": True, "user_count": 2, "subscription_count": 2}, info
    users = sdk.users_info("presence-py")
    assert sorted(u["id"] for u in users["users"]) == ["u1", "u2"], users
    assert sdk.trigger_batch([{"channel": "news", "name": "x", "data": "1"}, {"channel": "news", "name": "y", "data": "2"}]) == {}
    assert json.loads((await recv(c, "x"))["data"]) == 1
    assert json.loads((await recv(c, "y"))["data"]) == 2
    # The SDK posts to /users/{id}/terminate_connections (without /apps/{id}): still answered.
    assert sdk.terminate_user_connections("nobody") == {}

    await b.close()
    await wait_for(lambda: has("member_removed", "presence-py", user_id="u2"), "member_removed u2")
    await c.close()
    await wait_for(lambda: has("channel_vacated", "news"), "channel_vacated news")
    await a.close()
    await wait_for(lambda: has("channel_vacated", "presence-py"), "channel_vacated presence-py")
    assert not invalid, f"webhooks that failed validate_webhook: {invalid}"
    occupied = [e for e in events if e["name"] == "channel_occupied" and e["channel"] == "news"]
    assert len(occupied) == 1, f"channel_occupied once cluster-wide: {occupied}"
    print("python sdk api + webhooks: ok")


asyncio.run(main())
