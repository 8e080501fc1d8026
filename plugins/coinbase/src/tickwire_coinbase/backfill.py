"""The backfill stage: candles and trades from the Exchange REST API.

* ``candles:<interval>`` → ``GET /products/{id}/candles?granularity=&start=&end=``, in windows
  of at most 300 buckets (Coinbase answers HTTP 400 above that). Rows are
  ``[time, low, high, open, close, volume]``, newest first, as JSON *numbers*: they are decoded
  straight into :class:`~decimal.Decimal` from their text, never through float. Candles are
  yielded oldest first, only for buckets that start inside ``[gap.start, gap.end)``.
* ``trades`` → ``GET /products/{id}/trades``, newest first, paging to older trades with the
  ``CB-AFTER`` cursor until the page is older than ``gap.start``. Trades are yielded newest
  first (the API's order), so after an interruption what is still missing is
  ``[gap.start, oldest trade yielded]``. REST ``side`` is the maker's; it is inverted to the
  taker's, as on the feed.

HTTP 429 raises :class:`~tickwire.protocols.RateLimited`; any other error status raises
:class:`CoinbaseRESTError` naming the status and Coinbase's ``message``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import anyio
import httpx
import msgspec

from tickwire.events import Candle, Event, Gap, Interval, Trade
from tickwire.protocols import MalformedFrame, RateLimited
from tickwire.rest import retry_after
from tickwire.tls import client_context
from tickwire_coinbase.normalize import PROVIDER, decimal_of, parse_time, price_of
from tickwire_coinbase.settings import CoinbaseSettings

NS = 1_000_000_000
#: tickwire interval → Coinbase ``granularity`` (seconds) for the ones both know.
GRANULARITY: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
#: Most buckets one candles request may span.
MAX_BUCKETS = 300
#: Most trades one trades page may hold.
TRADES_PAGE = 1000
#: Trades gaps of a product at any distance are fetched as one (see ``coalesce_within``).
COALESCE_ANY = 1 << 62

_CandleRow = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]
_candles_decoder: msgspec.json.Decoder[list[_CandleRow]] = msgspec.json.Decoder(list[_CandleRow])


class _RestTrade(msgspec.Struct, gc=False):
    time: str
    trade_id: int
    price: str
    size: str
    side: Literal["buy", "sell"]


_trades_decoder: msgspec.json.Decoder[list[_RestTrade]] = msgspec.json.Decoder(list[_RestTrade])
_TAKER: dict[str, Literal["buy", "sell"]] = {"sell": "buy", "buy": "sell"}


class CoinbaseRESTError(Exception):
    """Coinbase answered an error status (other than 429) or an unreadable body."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def iso(ns: int) -> str:
    """Nanoseconds → ``2026-12-01T18:00:00Z`` (whole seconds, as the API takes them)."""
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CoinbaseBackfiller:
    """Fetches history for one source over ``source.rest_url``.

    :param settings: the source.
    :param min_interval: seconds between two requests (``1 / rest_requests_per_second``).
    :param clock: nanoseconds now (decides whether the newest candle is still forming).
    :param transport: an httpx transport, for embedding (e.g. a proxy); default: the network.
    """

    def __init__(
        self,
        settings: CoinbaseSettings,
        *,
        min_interval: float = 0.1,
        clock: Callable[[], int] = time.time_ns,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._settings = settings
        self._min_interval = min_interval
        self._clock = clock
        self._transport = transport
        self._timeout = timeout
        self._last_request = float("-inf")

    def __repr__(self) -> str:
        return f"CoinbaseBackfiller({self._settings.rest_url!r})"

    def coalesce_within(self, kind: str) -> int | None:
        """Trades are paged from the newest trade back to the gap's start, so the walk to an
        earlier gap passes through every later one: any two trades gaps of a product cost no
        more fetched as one. Candles are asked for by window: apart gaps stay apart."""
        return COALESCE_ANY if kind == "trades" else None

    def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        """Yield the events that fill ``gap`` (``trades`` or ``candles:<interval>``)."""
        if gap.kind == "trades":
            return self._trades(gap)
        kind, _, interval = gap.kind.partition(":")
        if kind != "candles" or interval not in GRANULARITY:
            raise ValueError(
                f"coinbase cannot backfill {gap.kind!r}; it can: trades, "
                + ", ".join(f"candles:{i}" for i in GRANULARITY)
            )
        return self._candles(gap, interval)  # type: ignore[arg-type]

    # ---- HTTP -------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        ca_file = self._settings.ca_file
        return httpx.AsyncClient(
            base_url=self._settings.rest_url.rstrip("/"),
            headers={"Accept": "application/json", "User-Agent": "tickwire-coinbase"},
            timeout=self._timeout,
            transport=self._transport,
            # ``ca_file`` covers https:// as well as wss:// (private CAs, test servers). One
            # context per process: building one per client cost ~200 ms of CPU per gap.
            verify=client_context(ca_file),
        )

    async def _get(
        self, client: httpx.AsyncClient, path: str, params: dict[str, str | int]
    ) -> httpx.Response:
        wait = self._last_request + self._min_interval - time.monotonic()
        if wait > 0:
            await anyio.sleep(wait)
        self._last_request = time.monotonic()
        response = await client.get(path, params=params)
        if response.status_code == 429:
            raise RateLimited(
                f"coinbase GET {path}: HTTP 429 {_message(response)}",
                retry_after=_retry_after(response),
            )
        if response.status_code >= 400:
            raise CoinbaseRESTError(
                f"coinbase GET {path}: HTTP {response.status_code}: {_message(response)}",
                response.status_code,
            )
        return response

    # ---- candles ------------------------------------------------------------------------

    async def _candles(self, gap: Gap, interval: Interval) -> AsyncIterator[Event]:
        seconds = GRANULARITY[interval]
        step = seconds * NS
        first = -(-gap.start // step) * step  # the first bucket starting at or after start
        last = (gap.end - 1) // step * step  # the last bucket starting before end
        path = f"/products/{gap.symbol}/candles"
        async with self._client() as client:
            window = first
            while window <= last:
                window_last = min(window + (MAX_BUCKETS - 1) * step, last)
                params: dict[str, str | int] = {
                    "granularity": seconds,
                    "start": iso(window),
                    "end": iso(window_last),
                }
                response = await self._get(client, path, params)
                try:
                    rows = _candles_decoder.decode(response.content)
                except msgspec.DecodeError as exc:
                    raise CoinbaseRESTError(
                        f"coinbase GET {path}: unreadable candles: {exc}"
                    ) from None
                now = self._clock()
                candles = {}
                for t, low, high, open_, close, volume in rows:
                    start = t * NS
                    # Coinbase may answer a bucket beyond either end (inclusive ends: 301 rows)
                    if window <= start <= window_last and gap.start <= start < gap.end:
                        candles[start] = Candle(
                            PROVIDER,
                            gap.symbol,
                            interval,
                            start,
                            open_,
                            high,
                            low,
                            close,
                            volume,
                            trades=None,
                            basis="trade",
                            closed=start + step <= now,
                            source="backfill",
                        )
                for start in sorted(candles):
                    yield candles[start]
                window = window_last + step

    # ---- trades -------------------------------------------------------------------------

    async def _trades(self, gap: Gap) -> AsyncIterator[Event]:
        path = f"/products/{gap.symbol}/trades"
        params: dict[str, str | int] = {"limit": TRADES_PAGE}
        async with self._client() as client:
            while True:
                response = await self._get(client, path, params)
                try:
                    page = _trades_decoder.decode(response.content)
                    received = self._clock()
                    trades = [self._trade(gap.symbol, row, received) for row in page]
                except (msgspec.DecodeError, MalformedFrame) as exc:
                    raise CoinbaseRESTError(
                        f"coinbase GET {path}: unreadable trades: {exc}"
                    ) from None
                for trade in trades:
                    if gap.start <= trade.ts < gap.end:
                        yield trade
                cursor = response.headers.get("CB-AFTER")
                if not trades or cursor is None or min(t.ts for t in trades) < gap.start:
                    return
                params = {"limit": TRADES_PAGE, "after": cursor}

    @staticmethod
    def _trade(symbol: str, row: _RestTrade, received_ts: int) -> Trade:
        return Trade(
            PROVIDER,
            symbol,
            parse_time(row.time),
            received_ts,
            price_of(row.price),
            decimal_of(row.size, "size"),
            _TAKER[row.side],
            str(row.trade_id),
        )


class _ErrorBody(msgspec.Struct):
    message: str = ""


def _message(response: httpx.Response) -> str:
    try:
        return msgspec.json.decode(response.content, type=_ErrorBody).message or "(no message)"
    except msgspec.DecodeError:
        return response.text[:200] or "(empty body)"


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after(response.headers)


__all__ = ("GRANULARITY", "MAX_BUCKETS", "CoinbaseBackfiller", "CoinbaseRESTError", "iso")
