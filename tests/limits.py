"""Helpers of the limit tests: chat requests with a client key, requests held in flight, limit errors.

    async with Held() as held:
        held.post(chatd.url, "router", key="ka-1")          # hangs at the fake upstream until let go
        assert await held.reach(openrouter, 1)
        ...
    # every held request is cancelled, so chatd closes its upstream call
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

HI = [{"role": "user", "content": "Hi"}]


def headers(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def chat(url: str, model: str, key: str | None = None, path: str = "/v1/chat/completions", **fields: Any
         ) -> httpx.Response:
    return httpx.post(url + path, json={"model": model, "messages": HI, **fields}, headers=headers(key),
                      timeout=10)


def limit_error(response: httpx.Response) -> tuple[int, str, str]:
    """(status, error type, code) of a limit's answer, checking what every one carries: x-should-retry
    true and a Retry-After of at least a second."""
    assert response.headers["x-should-retry"] == "true", response.headers
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    return response.status_code, error["type"], error["code"]


def providers(url: str, key: str | None = None) -> dict[str, dict]:
    listed = httpx.get(url + "/v1/chat/providers", headers=headers(key), timeout=10).json()["providers"]
    return {p["name"]: p for p in listed}


class Held:
    """Requests kept in flight at a hanging fake (Reply(hang=True)), all cancelled on exit."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=10)
        self.tasks: list[asyncio.Task] = []

    def post(self, url: str, model: str, key: str | None = None, **fields: Any) -> asyncio.Task:
        task = asyncio.ensure_future(self.http.post(url + "/v1/chat/completions", headers=headers(key),
                                                    json={"model": model, "messages": HI, **fields}))
        self.tasks.append(task)
        return task

    async def ask(self, url: str, model: str, key: str | None = None, **fields: Any) -> httpx.Response:
        """One more request while the held ones wait, answered at once."""
        return await self.http.post(url + "/v1/chat/completions", headers=headers(key),
                                    json={"model": model, "messages": HI, **fields})

    @staticmethod
    async def reach(fake, n: int, timeout: float = 5.0) -> bool:
        """True once exactly `n` requests are open at `fake`."""
        return await asyncio.to_thread(fake.wait_open_requests, n, timeout)

    async def beside(self, fake, hold_url: str, ask_url: str, key: str | None = None, model: str = "fast"
                     ) -> httpx.Response:
        """The answer to a request of `key` to `ask_url` while another of `key` ("router", which `fake` is
        scripted to hang) is held in flight through `hold_url`."""
        self.post(hold_url, "router", key)
        assert await self.reach(fake, 1)
        return await self.ask(ask_url, model, key)

    async def let_go(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def __aenter__(self) -> Held:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.let_go()
        await self.http.aclose()
