"""The normalizer on real recorded traffic, golden cases, and arbitrary input.

Golden cases: ``cases/<name>/frames.jsonl`` → ``expected.jsonl``, compared by content. Each
expected line is one item the normalizer emits, in order: an event as
``tickwire.events.to_json`` writes it, a control item as ``{"control": "<class>", ...fields}``,
or ``{"malformed": "<words the reason contains>"}`` for a frame that must raise MalformedFrame.
Frames of ignored types contribute no line. Regenerate (then review by hand!) with
``python plugins/coinbase/tests/test_normalize.py cases/<name>``.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.events import EVENT_TYPES, BookDelta, BookSnapshot, Quote, Trade, from_json, to_json
from tickwire.protocols import Heartbeat, MalformedFrame, Notice, Subscribed
from tickwire_coinbase.normalize import CoinbaseNormalizer, parse_time
from tickwire_coinbase.testing import read_capture

# ---- the real capture ----------------------------------------------------------------------


def _inbound(capture: Path) -> list[tuple[int, dict[str, Any], str]]:
    return [
        (int(ts * 1e9), msgspec.json.decode(text), text)
        for ts, direction, text in read_capture(capture)
        if direction == "in"
    ]


def test_capture_by_content(capture: Path) -> None:
    normalize = CoinbaseNormalizer()
    trades: dict[str, Trade] = {}
    ticker_sides: dict[str, str] = {}
    ids_by_product: dict[str, list[int]] = defaultdict(list)
    seen_types: set[str] = set()
    for received_ts, raw, text in _inbound(capture):
        items = list(normalize(text.encode(), received_ts))
        kind = raw["type"]
        seen_types.add(kind)
        if kind in ("match", "last_match"):
            (trade,) = items
            assert isinstance(trade, Trade)
            assert trade.provider == "coinbase"
            assert trade.symbol == raw["product_id"]
            assert trade.price == Decimal(raw["price"])
            assert str(trade.price) == raw["price"]  # exact text, no float on the way
            assert trade.size == Decimal(raw["size"])
            assert trade.side == {"buy": "sell", "sell": "buy"}[raw["side"]]
            assert trade.trade_id == str(raw["trade_id"])
            assert trade.received_ts == received_ts
            assert trade.ts == _reference_ns(raw["time"])
            if kind == "match":  # last_match describes a trade from before the subscribe
                assert abs(trade.received_ts - trade.ts) < 60 * 10**9
            trades[trade.trade_id + trade.symbol] = trade
            ids_by_product[trade.symbol].append(raw["trade_id"])
        elif kind == "ticker":
            (quote,) = items
            assert isinstance(quote, Quote)
            assert quote.symbol == raw["product_id"]
            assert quote.bid == Decimal(raw["best_bid"])
            assert quote.ask == Decimal(raw["best_ask"])
            assert quote.bid < quote.ask  # type: ignore[operator]
            assert quote.bid_size is None  # absent in the 2021 capture
            assert quote.ts == _reference_ns(raw["time"])
            ticker_sides[str(raw["trade_id"]) + raw["product_id"]] = raw["side"]
        elif kind == "snapshot":
            (book,) = items
            assert isinstance(book, BookSnapshot)
            assert book.bids and book.asks
            assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
            assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
            assert book.bids[0][0] < book.asks[0][0]
            assert len(book.bids) == len(raw["bids"])
            assert all(size >= 0 for _, size in book.bids + book.asks)
        elif kind == "l2update":
            (delta,) = items
            assert isinstance(delta, BookDelta)
            assert delta.changes == [
                ({"buy": "bid", "sell": "ask"}[s], Decimal(p), Decimal(z))
                for s, p, z in raw["changes"]
            ]
            assert delta.ts == _reference_ns(raw["time"])
        elif kind == "subscriptions":
            (ack,) = items
            assert isinstance(ack, Subscribed)
            wanted = {p for channel in raw["channels"] for p in channel["product_ids"]}
            assert set(ack.symbols) == wanted
        else:
            pytest.fail(f"unexpected type in the capture: {kind}")
    assert seen_types == {"subscriptions", "snapshot", "l2update", "ticker", "match", "last_match"}
    # the taker side of every match is the side its ticker reports for the same trade
    shared = trades.keys() & ticker_sides.keys()
    assert shared, "the capture has tickers for its matches"
    for key in shared:
        assert trades[key].side == ticker_sides[key]
    # trade ids go up by exactly one per product, last_match first
    for product, ids in ids_by_product.items():
        assert ids == list(range(ids[0], ids[0] + len(ids))), product


def test_book_replays_to_a_consistent_book(capture: Path) -> None:
    normalize = CoinbaseNormalizer()
    books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
    for received_ts, _, text in _inbound(capture):
        for item in normalize(text, received_ts):
            if isinstance(item, BookSnapshot):
                books[item.symbol] = {"bid": dict(item.bids), "ask": dict(item.asks)}
            elif isinstance(item, BookDelta):
                book = books[item.symbol]  # a snapshot always comes first
                for side, price, size in item.changes:
                    if size == 0:
                        book[side].pop(price, None)
                    else:
                        book[side][price] = size
    assert len(books) == 10
    for symbol, book in books.items():
        assert max(book["bid"]) < min(book["ask"]), symbol


def _reference_ns(text: str) -> int:
    """A slow, obviously right ISO 8601 reader (Z, up to nine fraction digits)."""
    assert text.endswith("Z")
    whole, _, frac = text[:-1].partition(".")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    delta = base - datetime(1970, 1, 1, tzinfo=UTC)
    seconds = delta.days * 86400 + delta.seconds
    return seconds * 10**9 + int(frac.ljust(9, "0")[:9] or "0")


# ---- golden cases --------------------------------------------------------------------------

CASES = Path(__file__).parent / "cases"
RECEIVED_TS = 1_700_000_000_000_000_000


def run_case(frames: Path) -> list[Any]:
    """The items (as comparable objects) the normalizer makes of a case's frames."""
    normalize = CoinbaseNormalizer()
    out: list[Any] = []
    for line in frames.read_text().splitlines():
        try:
            items = normalize(line, RECEIVED_TS)
        except MalformedFrame as exc:
            out.append(("malformed", str(exc)))
            continue
        for item in items:
            if isinstance(item, EVENT_TYPES):
                out.append(item)
            else:
                out.append({"control": type(item).__name__, **msgspec.structs.asdict(item)})
    return out


def read_expected(path: Path) -> list[Any]:
    out: list[Any] = []
    for line in path.read_text().splitlines():
        value = msgspec.json.decode(line)
        if "malformed" in value:
            out.append(("malformed", value["malformed"]))
        elif "control" in value:
            if "symbols" in value:
                value["symbols"] = tuple(value["symbols"])
            out.append(value)
        else:
            out.append(from_json(line))
    return out


def write_expected(case: Path) -> None:
    lines = []
    for item in run_case(case / "frames.jsonl"):
        if isinstance(item, tuple):
            lines.append(msgspec.json.encode({"malformed": item[1]}).decode())
        elif isinstance(item, dict):
            lines.append(msgspec.json.encode(item).decode())
        else:
            lines.append(to_json(item).decode())
    (case / "expected.jsonl").write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_golden_case(case: str) -> None:
    got = run_case(CASES / case / "frames.jsonl")
    expected = read_expected(CASES / case / "expected.jsonl")
    assert len(got) == len(expected)
    for index, (have, want) in enumerate(zip(got, expected, strict=True)):
        if isinstance(want, tuple):
            assert isinstance(have, tuple), f"line {index + 1}: expected MalformedFrame"
            assert want[1] in have[1], f"line {index + 1}: {have[1]!r}"
        else:
            assert have == want, f"line {index + 1}"


# ---- particular messages -------------------------------------------------------------------

NOW = 1_796_000_000_000_000_000


def _one(frame: dict[str, Any]) -> Any:
    (item,) = CoinbaseNormalizer()(msgspec.json.encode(frame), NOW)
    return item


def test_ticker_without_trades_uses_receive_time() -> None:
    quote = _one({"type": "ticker", "product_id": "HBAR-USD", "best_bid": "0.1", "best_ask": "0.2"})
    assert quote == Quote(
        "coinbase", "HBAR-USD", NOW, NOW, Decimal("0.1"), None, Decimal("0.2"), None
    )


def test_invalid_product_notice_names_the_symbol() -> None:
    notice = _one(
        {"type": "error", "message": "Failed to subscribe", "reason": "X-Y is not a valid product"}
    )
    assert isinstance(notice, Notice)
    assert notice.symbol == "X-Y"
    assert "X-Y is not a valid product" in notice.message
    assert not notice.fatal


def test_level2_auth_error_tells_what_to_do() -> None:
    notice = _one(
        {
            "type": "error",
            "message": "Failed to subscribe",
            "reason": "level2, level3, and full channels now require authentication. https://x",
        }
    )
    assert notice.symbol is None
    for word in ("api_key", "api_secret", "passphrase", "level2_batch"):
        assert word in notice.message


def test_heartbeat() -> None:
    beat = _one(
        {
            "type": "heartbeat",
            "last_trade_id": 42,
            "product_id": "BTC-USD",
            "sequence": 9,
            "time": "2026-12-01T00:00:01.5Z",
        }
    )
    assert beat == Heartbeat("coinbase", "BTC-USD", 1796083201_500000000, "42")


def test_unknown_types_are_ignored() -> None:
    normalize = CoinbaseNormalizer()
    for kind in ("status", "auction", "received", "open", "done", "activate", "rfq_match", "x"):
        assert list(normalize(msgspec.json.encode({"type": kind, "price": [1]}), NOW)) == []


@pytest.mark.parametrize(
    "text",
    [
        "2021-04-17T16:43:37.089723Z",
        "2021-04-17T16:43:37Z",
        "2021-04-17T16:43:37.1Z",
        "2021-04-17T16:43:37.123456789Z",
        "2024-02-29T23:59:59.999999Z",
    ],
)
def test_parse_time_examples(text: str) -> None:
    assert parse_time(text) == _reference_ns(text)


def test_parse_time_offsets_and_truncation() -> None:
    assert parse_time("2021-04-17T18:43:37+02:00") == parse_time("2021-04-17T16:43:37Z")
    assert parse_time("2021-04-17T16:43:37.1234567891Z") == parse_time(
        "2021-04-17T16:43:37.123456789Z"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2021-04-17",
        "2021-13-01T00:00:00Z",
        "2021-04-17T24:00:00Z",
        "2021-04-17T16:43:60Z",
        "2021-04-17T16:43:37.Z",
        "2021-04-17T16:43:37.5",
        "2021-04-17T16:43:37.٣Z",
        "2021-04-17T16:43:37.5+25:00",
        "2021-04-17 16:43:37Z",
        "\uff12021-04-17T16:43:37Z",  # a full-width digit,
    ],
)
def test_parse_time_refuses(text: str) -> None:
    # twice: the second time the prefix caches are warm
    for _ in range(2):
        with pytest.raises(MalformedFrame):
            parse_time(text)


# ---- arbitrary input -----------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
_TYPES = [
    "match",
    "last_match",
    "ticker",
    "heartbeat",
    "subscriptions",
    "error",
    "snapshot",
    "l2update",
    "status",
]
_MATCH = {
    "type": "match",
    "trade_id": 1,
    "side": "sell",
    "size": "1.5",
    "price": "2",
    "product_id": "BTC-USD",
    "sequence": 3,
    "time": "2021-04-17T16:43:37.089723Z",
}


def _only_malformed(frame: bytes | str) -> None:
    try:
        items = list(CoinbaseNormalizer()(frame, NOW))
    except MalformedFrame:
        return
    for item in items:
        if isinstance(item, Trade):
            assert item.price > 0 and item.size >= 0
            assert item.price.is_finite() and item.size.is_finite()


@settings(max_examples=400, deadline=None)
@given(_json)
def test_arbitrary_json_values(value: Any) -> None:
    _only_malformed(msgspec.json.encode(value))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_TYPES),
    st.dictionaries(
        st.sampled_from(
            [
                "product_id",
                "time",
                "price",
                "size",
                "side",
                "trade_id",
                "last_trade_id",
                "best_bid",
                "best_ask",
                "best_bid_size",
                "bids",
                "asks",
                "changes",
                "channels",
                "message",
                "reason",
            ]
        ),
        _json,
        max_size=8,
    ),
)
def test_known_types_with_arbitrary_fields(kind: str, fields: dict[str, Any]) -> None:
    _only_malformed(msgspec.json.encode({**fields, "type": kind}))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(_MATCH)), _json | st.text(alphabet="0123456789.-+eE:TZ_ naN"))
def test_match_with_one_field_replaced(key: str, value: Any) -> None:
    _only_malformed(msgspec.json.encode({**_MATCH, key: value}))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(frame: bytes) -> None:
    _only_malformed(frame)
    _only_malformed(b'{"type":"match",' + frame)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text(frame: str) -> None:
    _only_malformed(frame)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=0, max_value=999),
)
def test_parse_time_matches_reference(when: datetime, digits: int, extra_ns: int) -> None:
    ns_fraction = f"{when.microsecond:06d}{extra_ns:03d}"[:digits]
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ns_fraction}" if digits else "") + "Z"
    assert parse_time(text) == _reference_ns(text)
    offset = timedelta(hours=5, minutes=30)
    shifted = (when + offset).strftime("%Y-%m-%dT%H:%M:%S") + "+05:30"
    assert parse_time(shifted) == _reference_ns(when.strftime("%Y-%m-%dT%H:%M:%S") + "Z")


if __name__ == "__main__":
    for case in sorted(CASES.iterdir()) if len(sys.argv) < 2 else [Path(a) for a in sys.argv[1:]]:
        write_expected(case)
