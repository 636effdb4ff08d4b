"""The push senders the engine is compared with: LINE's SDK (loop and threads), HttpHook, bare aiohttp.

Each sender pushes one text message to each user id and returns a ``SendOutcome``. None of them
retries or logs anything: they are the baselines a reader would write without this project.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from line_simulator import DEFAULT_TOKEN

PUSH_PATH = "/v2/bot/message/push"
HTTP_CONN_ID = "bench_http"


@dataclass
class SendOutcome:
    """How many recipients got a 2xx, how long it took, and the other answers by status."""

    recipients: int
    sent: int = 0
    seconds: float = 0.0
    errors: Counter = field(default_factory=Counter)

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def user_ids(count: int, *, salt: int = 0) -> list[str]:
    """Return ``count`` distinct well-formed LINE user ids (``salt`` keeps runs apart)."""
    return [f"U{salt:08x}{n:024x}" for n in range(count)]


def _sdk_api(base_url: str, pool_size: int):
    from linebot.v3.messaging import ApiClient, Configuration, MessagingApi

    configuration = Configuration(host=base_url, access_token=DEFAULT_TOKEN)
    configuration.connection_pool_maxsize = max(pool_size, 1)
    client = ApiClient(configuration)
    return client, MessagingApi(client)


def _sdk_push_one(api, to: str) -> int:
    from linebot.v3.messaging import ApiException, PushMessageRequest, TextMessage

    try:
        api.push_message(PushMessageRequest(to=to, messages=[TextMessage(text="hi")]))
    except ApiException as err:
        return int(err.status or 0)
    return 200


def _tally(outcome: SendOutcome, statuses) -> SendOutcome:
    for status in statuses:
        if 200 <= status < 300:
            outcome.sent += 1
        else:
            outcome.errors[status] += 1
    return outcome


def sdk_loop(base_url: str, recipients: list[str]) -> SendOutcome:
    """Push with line-bot-sdk v3's ``MessagingApi.push_message`` in a plain loop."""
    client, api = _sdk_api(base_url, 1)
    with client:
        started = time.perf_counter()
        statuses = [_sdk_push_one(api, to) for to in recipients]
        seconds = time.perf_counter() - started
    return _tally(SendOutcome(len(recipients), seconds=seconds), statuses)


def sdk_threads(base_url: str, recipients: list[str], threads: int) -> SendOutcome:
    """Push with line-bot-sdk v3 from a ``ThreadPoolExecutor``; one shared client, pool sized to the threads."""
    client, api = _sdk_api(base_url, threads)
    with client, ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        statuses = list(pool.map(lambda to: _sdk_push_one(api, to), recipients))
        seconds = time.perf_counter() - started
    return _tally(SendOutcome(len(recipients), seconds=seconds), statuses)


def http_hook_loop(recipients: list[str]) -> SendOutcome:
    """Push with the http provider's ``HttpHook(method="POST").run(...)`` in a loop (connection ``bench_http``)."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="POST", http_conn_id=HTTP_CONN_ID)
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "Content-Type": "application/json"}
    extra = {"check_response": False}
    statuses = []
    started = time.perf_counter()
    for to in recipients:
        body = {"to": to, "messages": [{"type": "text", "text": "hi"}]}
        response = hook.run(PUSH_PATH, json=body, headers=headers, extra_options=extra)
        statuses.append(response.status_code)
    seconds = time.perf_counter() - started
    return _tally(SendOutcome(len(recipients), seconds=seconds), statuses)


async def _bare_aiohttp(base_url: str, recipients: list[str], in_flight: int) -> SendOutcome:
    import aiohttp

    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "Content-Type": "application/json"}
    url = base_url + PUSH_PATH
    statuses: list[int] = []
    pending = iter(recipients)
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for to in pending:
                data = json.dumps({"to": to, "messages": [{"type": "text", "text": "hi"}]}).encode()
                try:
                    async with session.post(url, data=data) as response:
                        await response.read()
                        statuses.append(response.status)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    statuses.append(0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        seconds = time.perf_counter() - started
    return _tally(SendOutcome(len(recipients), seconds=seconds), statuses)


def bare_aiohttp(base_url: str, recipients: list[str], in_flight: int = 256) -> SendOutcome:
    """Push with a bare aiohttp session, ``in_flight`` requests at once, no retries, no log: the ceiling."""
    return asyncio.run(_bare_aiohttp(base_url, recipients, in_flight))
