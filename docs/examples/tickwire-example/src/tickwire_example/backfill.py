"""The backfill stage: candles from ``GET /candles`` for the gaps the runner hands over.

The runner decides what to fetch (start-up bootstrap, detected gaps), paces requests by the
declared ``rest_requests_per_second``, waits after :class:`RateLimited` and retries failures:
this module only pages through one gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx

from tickwire.events import INTERVAL_NS, NS_PER_SECOND, Candle, Event, Gap
from tickwire.protocols import BackfillRefused, RateLimited
from tickwire_example.normalize import PROVIDER
from tickwire_example.settings import ExampleSettings

#: Most rows one ``/candles`` request returns.
MAX_ROWS = 500
_MS = 1_000_000


class ExampleBackfiller:
    """Yields ``Candle(source="backfill")`` for ``candles:<interval>`` gaps."""

    def __init__(self, source: ExampleSettings) -> None:
        self.base = (source.rest_url or "").rstrip("/")
        self.verify: str | bool = str(source.ca_file) if source.ca_file else True

    async def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        """Page through ``[gap.start, gap.end)``, oldest first."""
        kind, _, interval = gap.kind.partition(":")
        if kind != "candles" or interval not in INTERVAL_NS:
            raise BackfillRefused(f"{PROVIDER} has no REST history for {gap.kind!r}")
        step = INTERVAL_NS[interval]
        start = gap.start - gap.start % step
        async with httpx.AsyncClient(base_url=self.base, verify=self.verify) as client:
            while start < gap.end:
                response = await client.get(
                    "/candles",
                    params={
                        "symbol": gap.symbol,
                        "interval": step // NS_PER_SECOND,
                        "start": start // _MS,
                        "end": gap.end // _MS,
                        "limit": MAX_ROWS,
                    },
                )
                if response.status_code == 429:
                    retry = response.headers.get("Retry-After")
                    raise RateLimited("429 from /candles", float(retry) if retry else None)
                response.raise_for_status()
                rows = response.json()
                for t, o, h, low, c, v in rows:
                    begin = int(t) * _MS
                    if gap.start <= begin < gap.end:
                        yield Candle(
                            PROVIDER,
                            gap.symbol,
                            interval,  # type: ignore[arg-type]
                            begin,
                            Decimal(o),
                            Decimal(h),
                            Decimal(low),
                            Decimal(c),
                            Decimal(v),
                            source="backfill",
                        )
                if len(rows) < MAX_ROWS:
                    return
                start = int(rows[-1][0]) * _MS + step


__all__ = ("MAX_ROWS", "ExampleBackfiller")
