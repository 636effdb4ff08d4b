"""Helpers of the simulator tests: well-formed ids, message objects and a small LINE client."""

from __future__ import annotations

from typing import Any

import requests

from line_simulator import DEFAULT_TOKEN


def user_id(number: int) -> str:
    """Return a well-formed LINE user id made from a number."""
    return f"U{number:032x}"


def text(content: str = "Hello") -> dict[str, Any]:
    """Return a text message object."""
    return {"type": "text", "text": content}


class LineClient:
    """Send LINE API requests to the simulator with plain ``requests``."""

    def __init__(self, base_url: str, token: str = DEFAULT_TOKEN):
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()

    def headers(self, retry_key: str | None = None, token: str | None = None) -> dict[str, str]:
        """Return the headers of a JSON request with a bearer token and an optional retry key."""
        headers = {"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"}
        if retry_key is not None:
            headers["X-Line-Retry-Key"] = retry_key
        return headers

    def post(self, path: str, body: Any, retry_key: str | None = None, **kwargs: Any) -> requests.Response:
        """POST a JSON body to a LINE path."""
        kwargs.setdefault("timeout", 10)
        headers = kwargs.pop("headers", None) or self.headers(retry_key)
        return self.session.post(f"{self.base_url}{path}", json=body, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a LINE path with the bearer token."""
        kwargs.setdefault("timeout", 10)
        return self.session.get(f"{self.base_url}{path}", headers=self.headers(), **kwargs)

    def push(self, to: str, messages: list | None = None, retry_key: str | None = None, **kwargs: Any):
        """Push ``messages`` (one text by default) to one recipient."""
        return self.post(
            "/v2/bot/message/push", {"to": to, "messages": messages or [text()]}, retry_key, **kwargs
        )

    def multicast(
        self, to: list[str], messages: list | None = None, retry_key: str | None = None, **kwargs: Any
    ):
        """Multicast ``messages`` (one text by default) to a list of recipients."""
        body = {"to": to, "messages": messages or [text()]}
        return self.post("/v2/bot/message/multicast", body, retry_key, **kwargs)
