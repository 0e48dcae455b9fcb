"""Webhook receivers with event types, channel filters and headers, checked by the PyPI SDK.

Usage: python_webhook_filters.py PORT HOOK_PORT. corecast's app has three receivers on
HOOK_PORT: /all (a plain URL), /members (member_added and member_removed, header
X-Receiver-Token: s3cret) and /beta (channels ending in -beta). Each body must pass the SDK's
validate_webhook, and each receiver must get exactly its events.
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
got = {"all": [], "members": [], "beta": []}
invalid, tokens = [], []


class Hooks(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        ok = sdk.validate_webhook(key=self.headers.get("X-Pusher-Key"), signature=self.headers.get("X-Pusher-Signature"), body=body)
        which = self.path.lstrip("/")
        if ok is None:
            invalid.append(body)
        else:
            got[which].extend(ok["events"])
        if which == "members":
            tokens.append(self.headers.get("X-Receiver-Token"))
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


async def subscribe(ws, sid, channel, user=None):
    data = {"channel": channel}
    if channel.startswith("presence-"):
        auth = sdk.authenticate(channel=channel, socket_id=sid, custom_data={"user_id": user})
        data.update(auth=auth["auth"], channel_data=auth["channel_data"])
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
    await recv(ws, "pusher_internal:subscription_succeeded")


async def connect():
    ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/app/app-key?protocol=7&client=py&version=1")
    sid = json.loads((await recv(ws, "pusher:connection_established"))["data"])["socket_id"]
    return ws, sid


def names(events):
    return sorted(f'{e["name"]}:{e["channel"]}' for e in events)


async def main():
    ws, sid = await connect()
    await subscribe(ws, sid, "presence-room", "u1")
    await subscribe(ws, sid, "news-beta")
    await subscribe(ws, sid, "news")
    await ws.close()
    expected_all = sorted(
        f"{n}:{c}"
        for n, c in [
            ("channel_occupied", "presence-room"), ("member_added", "presence-room"),
            ("channel_occupied", "news-beta"), ("channel_occupied", "news"),
            ("member_removed", "presence-room"), ("channel_vacated", "presence-room"),
            ("channel_vacated", "news-beta"), ("channel_vacated", "news"),
        ]
    )
    for _ in range(200):
        if len(got["all"]) >= len(expected_all) and len(got["members"]) >= 2 and len(got["beta"]) >= 2:
            break
        await asyncio.sleep(0.05)
    assert names(got["all"]) == expected_all, got
    assert names(got["members"]) == ["member_added:presence-room", "member_removed:presence-room"], got
    assert names(got["beta"]) == ["channel_occupied:news-beta", "channel_vacated:news-beta"], got
    assert invalid == [], invalid
    assert tokens and all(t == "s3cret" for t in tokens), tokens
    print("ok")


asyncio.run(main())
