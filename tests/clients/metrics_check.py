"""Does known work against corecast, scrapes /metrics, parses it with the official Prometheus
client's OpenMetrics parser and checks that the figures match the work.

Usage: metrics_check.py PORT
"""
import asyncio
import json
import sys
import urllib.request

import pusher
import websockets
from prometheus_client.openmetrics.parser import text_string_to_metric_families

PORT = int(sys.argv[1])
K, M = 10, 7
sdk = pusher.Pusher(app_id="1", key="app-key", secret="app-secret", host="127.0.0.1", port=PORT, ssl=False)


def scrape():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics") as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers["Content-Type"]
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            samples[key] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


async def main():
    conns = []
    for _ in range(K):
        ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/app/app-key?protocol=7&client=py&version=1")
        await ws.recv()
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "metered"}}))
        assert "subscription_succeeded" in await ws.recv()
        conns.append(ws)
    for i in range(M):
        sdk.trigger("metered", "tick", str(i))
    for ws in conns:
        for _ in range(M):
            assert "tick" in await asyncio.wait_for(ws.recv(), 5)
    bad = pusher.Pusher(app_id="1", key="app-key", secret="wrong", host="127.0.0.1", port=PORT, ssl=False)
    try:
        bad.trigger("metered", "tick", "x")
        raise AssertionError("a bad signature was accepted")
    except pusher.errors.PusherBadAuth:
        pass

    s = scrape()
    assert value(s, "corecast_websocket_connections_all") == K, value(s, "corecast_websocket_connections_all")
    per_core = sum(v for (n, _), v in s.items() if n == "corecast_websocket_connections")
    assert per_core == K, per_core
    assert value(s, "corecast_handshakes_total") == K
    assert value(s, "corecast_published_total") == M, value(s, "corecast_published_total")
    assert value(s, "corecast_deliveries_total") == K * M, value(s, "corecast_deliveries_total")
    assert value(s, "corecast_messages_in_total") == K, value(s, "corecast_messages_in_total")
    assert value(s, "corecast_http_api_requests_total", status="200") == M
    assert value(s, "corecast_http_api_requests_total", status="401") == 1
    assert value(s, "corecast_app_connections", app="1") == K
    assert value(s, "corecast_process_resident_memory_bytes") > 1_000_000
    assert value(s, "corecast_slow_consumer_disconnects_total") == 0
    channels = sum(v for (n, _), v in s.items() if n == "corecast_channels")
    assert 1 <= channels <= 2, channels  # "metered" on each core that has a subscriber
    for ws in conns:
        await ws.close()
    # The closes are answered; the server forgets each connection once its close handshake ends.
    for _ in range(250):
        left = value(scrape(), "corecast_websocket_connections_all")
        if left == 0:
            break
        await asyncio.sleep(0.02)
    assert left == 0, f"{left} connections left 5 s after every client closed"
    print("metrics: ok")


asyncio.run(main())
