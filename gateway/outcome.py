"""What a request ended as, seen from the outside: shared by the access log and the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import CLIENT_CLOSED_REQUEST


class Outcome:
    """Filled in by `run`: the answer's status (500 until the handler says otherwise) and the
    response, when there is one."""

    def __init__(self) -> None:
        self.status = 500
        self.response: web.StreamResponse | None = None

    async def run(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], request: web.Request) -> web.StreamResponse:
        try:
            self.response = await handler(request)
            self.status = self.response.status
            return self.response
        except web.HTTPException as exc:
            self.status = exc.status
            raise
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away mid-request: not our failure.
            self.status = CLIENT_CLOSED_REQUEST
            raise
