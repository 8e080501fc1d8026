"""The backfill stage: REST history through ccxt, with a manual ``since`` loop.

``fetch_ohlcv`` for ``candles:<interval>`` gaps and ``fetch_trades`` for ``trades`` gaps, a page
at a time, each page starting after the last row of the one before. (Not ccxt's
``paginate=True``: without ``until`` it silently stops at ten pages, 10 000 binance candles.)
ccxt's own rate limiter (``enableRateLimit``) spaces the requests by the exchange's
``rateLimit`` and endpoint costs; a 429 (``RateLimitExceeded``/``DDoSProtection``) becomes
:class:`tickwire.protocols.RateLimited` with the server's ``Retry-After``, and the next call for
the same gap resumes where the last page ended.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio

from tickwire.events import INTERVAL_NS, Candle, Event, Gap, Interval, Trade
from tickwire.protocols import RateLimited
from tickwire_ccxtpro import exchanges
from tickwire_ccxtpro.settings import CcxtSettings
from tickwire_ccxtpro.subscribe import num

_MS = 1_000_000


class CcxtBackfiller:
    """Fetches one ``ccxt:<id>`` source's history over REST."""

    def __init__(self, source: CcxtSettings) -> None:
        self.source = source
        self._markets: Any = None
        self._currencies: Any = None
        #: Where a rate-limited gap goes on: ``(symbol, kind, start, end) -> since ms``.
        self._resume: dict[tuple[str, str, int, int], int] = {}
        #: REST requests made (for logs and tests).
        self.requests = 0

    def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        """Yield the events that fill ``gap`` (``candles:<interval>`` or ``trades``)."""
        return self._fetch(gap)

    async def _fetch(self, gap: Gap) -> AsyncIterator[Event]:
        source = self.source
        errors = exchanges.ccxt_base()
        exchange = exchanges.make_exchange(source.exchange_id, source.exchange_config())
        try:
            if self._markets is None:
                await exchange.load_markets()
                self._markets, self._currencies = exchange.markets, exchange.currencies
            else:
                exchange.set_markets(self._markets, self._currencies)
            if gap.kind.startswith("candles:"):
                interval = gap.kind.split(":", 1)[1]
                async for candle in self._candles(exchange, gap, interval):
                    yield candle
            elif gap.kind == "trades":
                async for trade in self._trades(exchange, gap):
                    yield trade
            else:
                raise ValueError(f"{source.provider} cannot backfill {gap.kind!r}")
        except (errors.RateLimitExceeded, errors.DDoSProtection) as exc:
            headers = getattr(exchange, "last_response_headers", None) or {}
            retry = headers.get("Retry-After") or headers.get("retry-after")
            try:
                retry_after = float(retry) if retry is not None else None
            except ValueError:
                retry_after = None
            raise RateLimited(f"{source.provider}: {exc}", retry_after) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await exchange.close()

    def _rows(self, exchange: Any) -> int:
        return self.source.backfill_rows or exchanges.OHLCV_ROWS.get(
            exchange.id, exchanges.DEFAULT_OHLCV_ROWS
        )

    async def _candles(self, exchange: Any, gap: Gap, interval: str) -> AsyncIterator[Candle]:
        if interval not in INTERVAL_NS or interval not in (exchange.timeframes or {}):
            raise ValueError(f"{self.source.provider} has no {interval} candles")
        step = INTERVAL_NS[interval] // _MS
        end = -(-gap.end // _MS)
        key = (gap.symbol, gap.kind, gap.start, gap.end)
        since = self._resume.get(key, gap.start // _MS // step * step)
        limit = self._rows(exchange)
        params: dict[str, Any] = {}
        if exchange.id in exchanges.SUPPORTS_UNTIL:
            params["until"] = end - 1
        provider, symbol = self.source.provider, gap.symbol
        iv: Interval = interval  # type: ignore[assignment]
        while since < end:
            self.requests += 1
            rows = await exchange.fetch_ohlcv(symbol, interval, since, limit, dict(params))
            rows = [r for r in rows if since <= r[0] < end]
            if not rows:
                break
            now = time.time_ns() // _MS
            for ts, o, h, lo, c, v, *_ in rows:
                volume = num(v)
                yield Candle(
                    provider,
                    symbol,
                    iv,
                    int(ts) * _MS,
                    Decimal(num(o) or "0"),
                    Decimal(num(h) or "0"),
                    Decimal(num(lo) or "0"),
                    Decimal(num(c) or "0"),
                    None if volume is None else Decimal(volume),
                    None,
                    "trade",
                    int(ts) + step <= now,
                    "backfill",
                )
            since = int(rows[-1][0]) + step
            self._resume[key] = since
        self._resume.pop(key, None)

    async def _trades(self, exchange: Any, gap: Gap) -> AsyncIterator[Trade]:
        start, end = gap.start // _MS, -(-gap.end // _MS)
        key = (gap.symbol, gap.kind, gap.start, gap.end)
        since = self._resume.get(key, start)
        window = exchanges.TRADE_WINDOW_MS.get(exchange.id)
        limit = self._rows(exchange)
        raw_price, raw_amount = exchanges.RAW_TRADE_FIELDS.get(exchange.id, (None, None))
        provider, symbol = self.source.provider, gap.symbol
        seen: set[str] = set()
        while since <= end:
            until = min(end, since + window - 1) if window else end
            params: dict[str, Any] = {}
            if exchange.id in exchanges.SUPPORTS_UNTIL:
                params["until"] = until
            self.requests += 1
            page = await exchange.fetch_trades(symbol, since, limit, params)
            fresh = []
            for t in page:
                ts, tid = t.get("timestamp"), t.get("id")
                if not isinstance(ts, int) or ts < since or ts > until:
                    continue
                if tid is not None and tid in seen:
                    continue
                fresh.append(t)
            for t in fresh:
                info = t.get("info")
                price = amount = None
                if raw_price is not None and isinstance(info, dict):
                    price, amount = info.get(raw_price), info.get(raw_amount)
                tid = t.get("id")
                side = t.get("side")
                yield Trade(
                    provider,
                    symbol,
                    int(t["timestamp"]) * _MS,
                    time.time_ns(),
                    Decimal(price if isinstance(price, str) else num(t.get("price")) or "0"),
                    Decimal(amount if isinstance(amount, str) else num(t.get("amount")) or "0"),
                    side if side in ("buy", "sell") else None,
                    None if tid is None else str(tid),
                )
            if len(page) >= limit and fresh:
                last = int(fresh[-1]["timestamp"])
                seen = {str(t.get("id")) for t in fresh if t.get("timestamp") == last}
                since = last if last > since else since + 1
            else:
                since = until + 1
                seen = set()
            self._resume[key] = since
        self._resume.pop(key, None)


__all__ = ("CcxtBackfiller",)
