"""The backfill stage: candles from ``GET /prices/{epic}`` (Version 3), within IG's allowance.

IG gives each API key and account 10,000 historical data points a week. Every answer carries
``metadata.allowance`` (``remainingAllowance``, ``totalAllowance``, ``allowanceExpiry`` in
seconds); once it is used up IG answers HTTP 403
``error.public-api.exceeded-account-historical-data-allowance``. The backfiller then raises
:class:`~tickwire.protocols.RateLimited` with the time until the allowance resets, so the runner
waits that long instead of asking again; and it does not even ask while it knows the allowance is
spent. Pages are paced by ``rest_requests_per_minute``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import anyio

from tickwire.events import INTERVAL_NS, Candle, Event, Gap, Interval
from tickwire.protocols import MalformedFrame, RateLimited
from tickwire_ig.normalize import PROVIDER, price
from tickwire_ig.rest import (
    HISTORY_ALLOWANCE_CODE,
    RATE_LIMIT_CODES,
    IGError,
    IGSession,
)
from tickwire_ig.settings import IGSettings

#: tickwire interval -> IG ``resolution``.
RESOLUTIONS: dict[str, str] = {
    "1s": "SECOND",
    "1m": "MINUTE",
    "5m": "MINUTE_5",
    "15m": "MINUTE_15",
    "1h": "HOUR",
    "4h": "HOUR_4",
    "1d": "DAY",
}
#: Seconds to wait after a per-minute rate-limit answer.
MINUTE_LIMIT_WAIT = 60.0
#: Seconds to wait for the weekly allowance when IG did not say when it resets.
UNKNOWN_RESET_WAIT = 3600.0
_TWO = Decimal(2)


def ig_time(ns: int) -> str:
    """``yyyy-MM-ddTHH:mm:ss`` (UTC) for a time in nanoseconds."""
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_utc(text: str) -> int:
    """``snapshotTimeUTC`` (``2020-10-12T20:50:00``) in nanoseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise MalformedFrame(f"not a snapshotTimeUTC: {str(text)[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000


class IGBackfiller:
    """Fetches candle gaps of one source over IG's REST price history."""

    def __init__(self, settings: IGSettings, session: IGSession | None = None) -> None:
        self.settings = settings
        self.session = session or IGSession(settings)
        self.min_interval = 60.0 / settings.rest_requests_per_minute
        self._last_request = 0.0
        self.remaining: int | None = None
        self.total: int | None = None
        self._resets_at: float | None = None  # monotonic time the allowance resets

    def _spent(self) -> RateLimited:
        wait = (
            max(1.0, self._resets_at - time.monotonic())
            if self._resets_at is not None
            else UNKNOWN_RESET_WAIT
        )
        total = f"{self.total:,}" if self.total else "10,000"
        return RateLimited(
            f"IG's historical data allowance ({total} points a week) is used up; "
            f"it resets in {wait:.0f} s",
            retry_after=wait,
        )

    async def _pace(self) -> None:
        wait = self._last_request + self.min_interval - time.monotonic()
        if wait > 0:
            await anyio.sleep(wait)
        self._last_request = time.monotonic()

    def _note_allowance(self, metadata: dict[str, Any]) -> None:
        allowance = metadata.get("allowance") or {}
        if "remainingAllowance" in allowance:
            self.remaining = int(allowance["remainingAllowance"])
        if "totalAllowance" in allowance:
            self.total = int(allowance["totalAllowance"])
        if "allowanceExpiry" in allowance:
            self._resets_at = time.monotonic() + float(allowance["allowanceExpiry"])

    async def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        """Yield the candles of ``gap`` (``candles:<interval>``), page by page."""
        kind, _, interval = gap.kind.partition(":")
        if kind != "candles" or interval not in RESOLUTIONS:
            return
        if self.remaining == 0 and self._resets_at is not None:
            if time.monotonic() < self._resets_at:
                raise self._spent()
            self.remaining = None
        length = INTERVAL_NS[interval]
        start = gap.start // length * length
        params: dict[str, Any] = {
            "resolution": RESOLUTIONS[interval],
            "from": ig_time(start),
            "to": ig_time(max(gap.end - 1, start)),
            "pageSize": self.settings.page_size,
            "pageNumber": 1,
        }
        path = f"/prices/{quote(gap.symbol, safe='.')}"
        while True:
            await self._pace()
            try:
                response = await self.session.get(path, version=3, params=params)
            except IGError as exc:
                raise IGError(f"price history for {gap.symbol}: {exc}") from None
            if response.status_code != 200:
                error = self.session.error_of(response)
                if error.code == HISTORY_ALLOWANCE_CODE:
                    self.remaining = 0
                    raise self._spent()
                if error.code in RATE_LIMIT_CODES or response.status_code == 429:
                    raise RateLimited(
                        f"IG's request allowance is used up ({error.code or 'HTTP 429'})",
                        retry_after=MINUTE_LIMIT_WAIT,
                    )
                raise error
            body = response.json()
            metadata = body.get("metadata") or {}
            self._note_allowance(metadata)
            for row in body.get("prices") or []:
                candle = self.candle(gap.symbol, interval, row)  # type: ignore[arg-type]
                if candle is not None and start <= candle.start < gap.end:
                    yield candle
            page = metadata.get("pageData") or {}
            number = int(page.get("pageNumber") or params["pageNumber"])
            pages = int(page.get("totalPages") or 1)
            if number >= pages:
                return
            if self.remaining == 0:
                raise self._spent()
            params["pageNumber"] = number + 1

    def candle(self, epic: str, interval: Interval, row: dict[str, Any]) -> Candle | None:
        """One ``prices[]`` row as a backfilled Candle (``None`` when it has no prices)."""
        values: list[Decimal] = []
        for part in ("openPrice", "highPrice", "lowPrice", "closePrice"):
            quote_ = row.get(part) or {}
            bid = price(_text(quote_.get("bid")), f"{part}.bid")
            ask = price(_text(quote_.get("ask")), f"{part}.ask")
            if self.settings.candle_basis == "bid":
                if bid is None:
                    return None
                values.append(bid)
            else:
                if bid is None or ask is None:
                    return None
                values.append((bid + ask) / _TWO)
        o, h, low, c = values
        volume = row.get("lastTradedVolume")
        return Candle(
            PROVIDER,
            epic,
            interval,
            parse_utc(row.get("snapshotTimeUTC") or ""),
            o,
            h,
            low,
            c,
            volume=Decimal(str(volume)) if volume is not None else None,
            trades=None,
            basis=self.settings.candle_basis,
            closed=True,
            source="backfill",
        )


def _text(value: Any) -> str | None:
    """A JSON number or string as the text Decimal reads (JSON numbers come in as text too)."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


__all__ = ("RESOLUTIONS", "IGBackfiller", "ig_time", "parse_utc")
