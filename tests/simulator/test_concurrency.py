"""Many connections at once: every request answered, every push recorded exactly once."""

from __future__ import annotations

import asyncio

import aiohttp

from line_simulator import DEFAULT_TOKEN

from .simulator_helpers import user_id


async def push_all(base_url: str, count: int) -> list[int]:
    connector = aiohttp.TCPConnector(limit=count)
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def push(number: int) -> int:
            body = {"to": user_id(number), "messages": [{"type": "text", "text": "hi"}]}
            async with session.post(f"{base_url}/v2/bot/message/push", json=body) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(push(number) for number in range(count)))


def test_500_simultaneous_connections_are_all_answered_and_recorded_once(sim):
    sim.admin.configure(
        channels=[{"name": "default", "rate_limits": {"push": 0}}], faults={"latency_ms": 200}
    )

    statuses = asyncio.run(push_all(sim.base_url, 500))

    assert statuses == [200] * 500
    counts = sim.admin.delivery_counts()
    assert len(counts) == 500
    assert set(counts.values()) == {1}
