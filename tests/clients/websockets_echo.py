"""Python `websockets` (a real third-party client) against corecast's /echo.

Usage: websockets_echo.py ws://127.0.0.1:PORT/echo
Exits non-zero with a message on the first mismatch.
"""
import asyncio
import sys

import websockets


async def main(url: str) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send("grüße")
        assert await ws.recv() == "grüße"
        await ws.send(bytes(range(256)) * 100)
        assert await ws.recv() == bytes(range(256)) * 100
        # A fragmented text message: the server reassembles and echoes one message.
        await ws.send(["frag", "ment", "ed ✓"])
        assert await ws.recv() == "fragmented ✓"
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.close(code=4000, reason="bye")
    # The server echoed our close code.
    assert ws.close_code == 4000 and ws.close_reason == "", (ws.close_code, ws.close_reason)
    print("websockets client: ok")


asyncio.run(main(sys.argv[1]))
