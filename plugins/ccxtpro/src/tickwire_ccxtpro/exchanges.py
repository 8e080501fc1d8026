"""What the plugin knows about ccxt.pro and about particular exchanges.

ccxt is imported lazily (``import ccxt.pro`` loads every exchange, which takes seconds), so
loading the plugin costs nothing until a ``ccxt:`` source is configured.

Per-exchange knowledge lives in small tables here, never in the stages:

* :data:`URL_MAPS`: how ``ws_url`` / ``rest_url`` map onto the exchange's ccxt ``urls``;
* :data:`DEFAULT_OPTIONS`: ccxt options the plugin sets for an exchange (users override);
* :data:`RAW_TRADE_FIELDS`: keys of the raw trade (``trade['info']``) holding price and amount
  as the exchange's own text, so they become Decimals without passing through a float;
* :data:`SEQUENTIAL_TRADE_IDS`: exchanges whose streamed trade ids go up by one per symbol;
* :data:`TRADE_WINDOW_MS`: the longest time window one REST trades request may span.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("tickwire.ccxt")

#: ``(path in ccxt urls, suffix appended to rest_url)``; ``ws`` paths take ``ws_url`` as is.
URL_MAPS: dict[str, dict[str, list[tuple[tuple[str, ...], str]]]] = {
    "binance": {
        "ws": [(("api", "ws", "spot"), ""), (("api", "ws", "margin"), "")],
        "rest": [
            (("api", "public"), "/api/v3"),
            (("api", "private"), "/api/v3"),
            (("api", "v1"), "/api/v1"),
            (("api", "sapi"), "/sapi/v1"),
        ],
    },
}

#: Binance's public ``trade`` stream ids are not the ids its keyless REST history
#: (``aggTrades``) pages by, so the plugin streams ``aggTrade`` there: stream and backfill then
#: share one id space and a backfilled trade never duplicates a streamed one. ``watch_ticker``
#: goes through ``watchTickers``, whose default ``miniTicker`` stream has no bid or ask.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"watchTrades": {"name": "aggTrade"}, "watchTickers": {"name": "ticker"}},
}

RAW_TRADE_FIELDS: dict[str, tuple[str, str]] = {"binance": ("p", "q")}

SEQUENTIAL_TRADE_IDS: frozenset[str] = frozenset({"binance"})

TRADE_WINDOW_MS: dict[str, int] = {"binance": 3_600_000}

#: Exchanges whose ``fetch_ohlcv`` / ``fetch_trades`` honour ccxt's ``until`` param.
SUPPORTS_UNTIL: frozenset[str] = frozenset({"binance"})

#: Rows per REST history page where ccxt does not say (``fetch_ohlcv`` limit).
OHLCV_ROWS: dict[str, int] = {"binance": 1000}
DEFAULT_OHLCV_ROWS = 500


def ccxt_pro() -> Any:
    """The ``ccxt.pro`` module (imported on first use)."""
    return importlib.import_module("ccxt.pro")


def ccxt_base() -> Any:
    """The ``ccxt`` module (errors and helpers)."""
    return importlib.import_module("ccxt")


@functools.cache
def pro_exchange_ids() -> tuple[str, ...]:
    """Every exchange id ccxt.pro streams."""
    return tuple(ccxt_pro().exchanges)


@functools.cache
def _describe(exchange_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    cls = getattr(ccxt_pro(), exchange_id)
    instance = cls({})
    return dict(instance.has), dict(instance.timeframes or {})


def has(exchange_id: str) -> dict[str, Any]:
    """The exchange's ``has`` flags (``watchTrades``, ``watchOHLCV``, ``fetchOHLCV`` …)."""
    return _describe(exchange_id)[0]


def timeframes(exchange_id: str) -> dict[str, Any]:
    """The candle intervals the exchange knows (``exchange.timeframes``)."""
    return _describe(exchange_id)[1]


def maps_urls(exchange_id: str) -> bool:
    """Whether ``ws_url`` / ``rest_url`` can be mapped for this exchange."""
    return exchange_id in URL_MAPS


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def urls_for(exchange_id: str, ws_url: str | None, rest_url: str | None) -> dict[str, Any]:
    """The ccxt ``urls`` override that points the exchange at ``ws_url`` and ``rest_url``."""
    urls: dict[str, Any] = {}
    maps = URL_MAPS.get(exchange_id)
    if maps is None:
        return urls
    if ws_url:
        for path, suffix in maps["ws"]:
            _set_path(urls, path, ws_url.rstrip("/") + suffix)
    if rest_url:
        for path, suffix in maps["rest"]:
            _set_path(urls, path, rest_url.rstrip("/") + suffix)
    return urls


def default_options(exchange_id: str, symbols: Sequence[str]) -> dict[str, Any]:
    """The ccxt options the plugin sets for ``exchange_id`` (before the user's own)."""
    options = dict(DEFAULT_OPTIONS.get(exchange_id, {}))
    if exchange_id == "binance" and not any(":" in s for s in symbols):
        # Spot symbols only: load_markets then needs one exchangeInfo call, not three.
        options["fetchMarkets"] = {"types": ["spot"]}
    return options


class _Guard:
    """Mixed in front of a ccxt exchange class: a frame ccxt cannot read must not kill it.

    ccxt's websocket client parses JSON inside an asyncio done-callback with no ``try``: one
    unreadable frame ends its receive loop silently (the connection then hangs until the ping
    times out). The guard catches what the client's parse or the exchange's handler raise for
    one frame, reports the frame (so the runner counts it as malformed and keeps it in the
    dead-letter file) and lets the client read on.
    """

    tickwire_on_malformed: Callable[[str, str], None] | None = None

    def client(self, url: str) -> Any:
        client = super().client(url)  # type: ignore[misc]
        if getattr(client, "_tickwire_guarded", False):
            return client
        original = client.handle_text_or_binary_message

        def guarded(data: Any) -> None:
            try:
                original(data)
            except Exception as exc:
                self._tickwire_report(data, f"{type(exc).__name__}: {exc}")

        client.handle_text_or_binary_message = guarded
        client._tickwire_guarded = True
        return client

    def handle_message(self, client: Any, message: Any) -> Any:
        if not isinstance(message, dict | list):
            self._tickwire_report(message, "not a JSON object")
            return None
        return super().handle_message(client, message)  # type: ignore[misc]

    def _tickwire_report(self, data: Any, reason: str) -> None:
        callback = self.tickwire_on_malformed
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if callback is None:
            log.warning("ccxt frame dropped (%s): %.160s", reason, text)
        else:
            callback(text, reason)


@functools.cache
def guarded_class(exchange_id: str) -> type[Any]:
    """The ccxt.pro class of ``exchange_id`` with :class:`_Guard` in front."""
    cls = getattr(ccxt_pro(), exchange_id)
    return type(f"Tickwire_{exchange_id}", (_Guard, cls), {})


def make_exchange(exchange_id: str, config: dict[str, Any]) -> Any:
    """A fresh ccxt.pro exchange instance (close it with ``await exchange.close()``)."""
    return guarded_class(exchange_id)(config)


__all__ = (
    "DEFAULT_OPTIONS",
    "OHLCV_ROWS",
    "RAW_TRADE_FIELDS",
    "SEQUENTIAL_TRADE_IDS",
    "SUPPORTS_UNTIL",
    "TRADE_WINDOW_MS",
    "URL_MAPS",
    "ccxt_base",
    "ccxt_pro",
    "default_options",
    "guarded_class",
    "has",
    "make_exchange",
    "maps_urls",
    "pro_exchange_ids",
    "timeframes",
    "urls_for",
)
