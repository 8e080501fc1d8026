"""The backfill stage: candles from Finnhub's REST API (a premium feature).

``candles:<interval>`` → ``GET /stock/candle``, ``/forex/candle`` or ``/crypto/candle`` (chosen
by the symbol's form, see :meth:`FinnhubSettings.market_of`) with ``symbol``, ``resolution``
(``1, 5, 15, 60, D``), ``from`` and ``to`` (Unix seconds, inclusive). The answer is columnar
and oldest first: ``{"o":[..],"h":[..],"l":[..],"c":[..],"v":[..],"t":[..],"s":"ok"}``, JSON
numbers decoded into :class:`~decimal.Decimal` from their text. ``{"s":"no_data"}`` (HTTP 200)
is an empty, confirmed range: nothing is yielded and the runner records the gap ``empty``.
Intraday ranges are asked for a month at a time (Finnhub returns at most one month of
intraday stock candles per call). Candle ``start`` is Finnhub's bar time as given (daily bars
are stamped 04:00 UTC for US stocks and 22:00 UTC for forex, not midnight UTC).

The API key goes in the ``X-Finnhub-Token`` header, never in the URL, so httpx's request log
lines (which print the URL) cannot show it. Answers:

* 429 → :class:`~tickwire.protocols.RateLimited` (``retry_after`` from ``Retry-After`` when
  sent; Finnhub documents none, so the runner backs off); requests are also spaced by
  ``rest_calls_per_minute``;
* 401/403 → :class:`FinnhubAccessDenied`: the key's plan has no access to the endpoint. It is
  remembered per endpoint, so the runner's retries of the gap fail at once without calling
  Finnhub again (the runner retries any error a few times, then logs ``gap.failed``);
* other errors → :class:`FinnhubRESTError` (the runner retries it with backoff).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import anyio
import httpx
import msgspec

from tickwire.events import Candle, Event, Gap, Interval
from tickwire.protocols import RateLimited
from tickwire.rest import retry_after
from tickwire.tls import client_context
from tickwire_finnhub.normalize import PROVIDER
from tickwire_finnhub.settings import FinnhubSettings, Market

NS = 1_000_000_000
#: tickwire interval → Finnhub ``resolution``.
RESOLUTION: dict[str, str] = {"1m": "1", "5m": "5", "15m": "15", "1h": "60", "1d": "D"}
#: tickwire interval → bar length in seconds.
SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
#: Longest range asked in one call: a month for intraday bars, ten years for daily ones.
WINDOW_S: dict[str, int] = {
    "1m": 30 * 86400,
    "5m": 30 * 86400,
    "15m": 30 * 86400,
    "1h": 30 * 86400,
    "1d": 3650 * 86400,
}
PATHS: dict[Market, str] = {
    "stock": "/stock/candle",
    "forex": "/forex/candle",
    "crypto": "/crypto/candle",
}


class FinnhubRESTError(Exception):
    """Finnhub answered an error status (other than 429) or a body that cannot be read."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FinnhubAccessDenied(FinnhubRESTError, PermissionError):
    """The key's plan has no access to this endpoint (HTTP 403, or 401): not worth retrying."""


class _Candles(msgspec.Struct, gc=False):
    s: str
    o: list[Decimal] = []
    h: list[Decimal] = []
    l: list[Decimal] = []  # noqa: E741 (Finnhub's name)
    c: list[Decimal] = []
    v: list[Decimal] = []
    t: list[int] = []


class _ErrorBody(msgspec.Struct):
    error: str = ""


_candles_decoder: msgspec.json.Decoder[_Candles] = msgspec.json.Decoder(_Candles)


class FinnhubBackfiller:
    """Fetches candle history for one source over ``source.rest_url``.

    :param settings: the source.
    :param clock: nanoseconds now (decides whether the newest candle is still forming).
    :param transport: an httpx transport, for embedding (a proxy, say); default: the network.
    """

    def __init__(
        self,
        settings: FinnhubSettings,
        *,
        clock: Callable[[], int] = time.time_ns,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._settings = settings
        self._min_interval = 60.0 / settings.rest_calls_per_minute
        self._clock = clock
        self._transport = transport
        self._timeout = timeout
        self._last_request = float("-inf")
        self._denied: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"FinnhubBackfiller({self._settings.rest_url!r})"

    def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        """Yield the candles that fill ``gap`` (``kind`` ``candles:<interval>``), oldest first."""
        kind, _, interval = gap.kind.partition(":")
        if kind != "candles" or interval not in RESOLUTION:
            raise ValueError(
                f"finnhub cannot backfill {gap.kind!r} (it has no trade history); it can: "
                + ", ".join(f"candles:{i}" for i in RESOLUTION)
            )
        return self._candles(gap, interval)  # type: ignore[arg-type]

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._settings.rest_url.rstrip("/"),
            headers={
                "Accept": "application/json",
                "User-Agent": "tickwire-finnhub",
                "X-Finnhub-Token": self._settings.token,
            },
            timeout=self._timeout,
            transport=self._transport,
            # One context per process (httpx would load the CA store for every client: ~200 ms when
            # busy); `ca_file` trusts a private CA.
            verify=client_context(self._settings.ca_file),
        )

    async def _get(
        self, client: httpx.AsyncClient, path: str, params: dict[str, str | int]
    ) -> bytes:
        denied = self._denied.get(path)
        if denied is not None:
            raise FinnhubAccessDenied(denied, 403)
        wait = self._last_request + self._min_interval - time.monotonic()
        if wait > 0:
            await anyio.sleep(wait)
        self._last_request = time.monotonic()
        response = await client.get(path, params=params)
        status = response.status_code
        if status == 429:
            raise RateLimited(
                f"finnhub GET {path}: HTTP 429: {_message(response)}",
                retry_after=_retry_after(response),
            )
        if status in (401, 403):
            message = (
                f"finnhub GET {path}: HTTP {status}: {_message(response)} (candles are a "
                "premium feature: this API key's plan has no access to this endpoint, so "
                "backfill from it is off; upgrade the plan or set [bootstrap] days = 0)"
            )
            self._denied[path] = message
            raise FinnhubAccessDenied(message, status)
        if status >= 400:
            raise FinnhubRESTError(
                f"finnhub GET {path}: HTTP {status}: {_message(response)}", status
            )
        return response.content

    async def _candles(self, gap: Gap, interval: Interval) -> AsyncIterator[Event]:
        step_s = SECONDS[interval]
        path = PATHS[self._settings.market_of(gap.symbol)]
        first_s = gap.start // NS
        last_s = (gap.end - 1) // NS  # ``to`` is inclusive
        async with self._client() as client:
            window = first_s
            while window <= last_s:
                window_last = min(window + WINDOW_S[interval] - 1, last_s)
                params: dict[str, str | int] = {
                    "symbol": gap.symbol,
                    "resolution": RESOLUTION[interval],
                    "from": window,
                    "to": window_last,
                }
                body = await self._get(client, path, params)
                for candle in self._parse(body, path, gap, interval, step_s):
                    yield candle
                window = window_last + 1

    def _parse(
        self, body: bytes, path: str, gap: Gap, interval: Interval, step_s: int
    ) -> list[Candle]:
        try:
            bars = _candles_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise FinnhubRESTError(f"finnhub GET {path}: unreadable candles: {exc}") from None
        if bars.s == "no_data":
            return []
        if bars.s != "ok":
            raise FinnhubRESTError(f"finnhub GET {path}: candle status {bars.s!r}")
        n = len(bars.t)
        columns = (bars.o, bars.h, bars.l, bars.c)
        if any(len(col) != n for col in columns) or (bars.v and len(bars.v) != n):
            raise FinnhubRESTError(f"finnhub GET {path}: candle arrays of unequal length")
        now = self._clock()
        candles: dict[int, Candle] = {}
        for i, t in enumerate(bars.t):
            start = t * NS
            if not gap.start <= start < gap.end:
                continue
            candles[start] = Candle(
                PROVIDER,
                gap.symbol,
                interval,
                start,
                bars.o[i],
                bars.h[i],
                bars.l[i],
                bars.c[i],
                bars.v[i] if bars.v else None,
                trades=None,
                basis="trade",
                closed=start + step_s * NS <= now,
                source="backfill",
            )
        return [candles[start] for start in sorted(candles)]


def _message(response: httpx.Response) -> str:
    try:
        return msgspec.json.decode(response.content, type=_ErrorBody).error or "(no message)"
    except msgspec.DecodeError:
        return response.text[:200] or "(empty body)"


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after(response.headers)


__all__ = (
    "PATHS",
    "RESOLUTION",
    "FinnhubAccessDenied",
    "FinnhubBackfiller",
    "FinnhubRESTError",
)
