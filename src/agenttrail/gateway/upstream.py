"""The HTTP client to the providers. aiohttp, chosen by measurement: on this machine a streamed call
through it costs about 0.8 ms against httpx's 1.6-2.0 ms (docs/performance.md), and the gateway makes
one per model call.

The rest of the gateway sees only this module's small surface and its two error types.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp


class UpstreamUnreachable(Exception):
    """No connection could be made, or it broke before an answer."""


class UpstreamTimeout(Exception):
    """The upstream did not answer (or stopped streaming) within the configured time."""


class UpstreamResponse:
    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeout(str(e) or type(e).__name__) from None
        except aiohttp.ClientError as e:
            raise UpstreamUnreachable(f"{type(e).__name__}: {e}") from None

    async def read_some(self) -> bytes:
        """What has arrived since the last call (waiting for something), or b"" at the end. A plain
        coroutine, not an iterator: one layer less per relayed read."""
        try:
            return await self._resp.content.readany()
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeout(str(e) or type(e).__name__) from None
        except aiohttp.ClientError as e:
            raise UpstreamUnreachable(f"{type(e).__name__}: {e}") from None

    def close(self) -> None:
        self._resp.release()


class UpstreamClient:
    def __init__(self, connect_timeout_s: float, read_timeout_s: float, max_connections: int = 1000) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            # No cookie jar and no auto-decompression: the gateway relays bytes as the provider sent them.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max, ttl_dns_cache=300),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> UpstreamResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            resp = await self._session.request(method, url, headers=headers, data=body, allow_redirects=False)
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeout(str(e) or type(e).__name__) from None
        except aiohttp.ClientError as e:
            raise UpstreamUnreachable(f"{type(e).__name__}: {e}") from None
        return UpstreamResponse(resp)
