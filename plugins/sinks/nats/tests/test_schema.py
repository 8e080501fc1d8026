"""The bus schema: token encoding, the msgpack/1 round trip and message ids."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwire.events import BookDelta, BookSnapshot, Candle, Event, Gap, Quote, Trade
from tickwire.protocols import MalformedFrame
from tickwire.testing import strategies as tws
from tickwire_nats.normalize import normalize
from tickwire_nats.schema import (
    decode,
    decode_token,
    encode,
    encode_token,
    message_id,
    parse_subject,
    subject_for,
)

FORBIDDEN = set(".*> \t\r\n\x00")


@pytest.mark.parametrize(
    ("symbol", "token"),
    [
        ("BTC-USD", "BTC-USD"),
        ("BTC/USDT", "BTC%2FUSDT"),
        ("OANDA:EUR_USD", "OANDA%3AEUR_USD"),
        ("CS.D.EURUSD.CFD.IP", "CS%2ED%2EEURUSD%2ECFD%2EIP"),
        ("BRK B", "BRK%20B"),
        ("100%", "100%25"),
        (">", "%3E"),
        ("*", "%2A"),
        ("€", "%E2%82%AC"),
    ],
)
def test_token_examples(symbol: str, token: str) -> None:
    assert encode_token(symbol) == token
    assert decode_token(token) == symbol


@given(st.text(min_size=1))
def test_tokens_are_safe_and_reversible(text: str) -> None:
    token = encode_token(text)
    assert token and not (set(token) & FORBIDDEN)
    assert token.isascii() and token.isprintable()
    assert decode_token(token) == text


@given(st.text(min_size=1), st.text(min_size=1))
def test_distinct_symbols_get_distinct_tokens(a: str, b: str) -> None:
    assert (encode_token(a) == encode_token(b)) == (a == b)


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
nullable = st.one_of(st.none(), decimals)


@st.composite
def books(draw: st.DrawFn) -> BookSnapshot | BookDelta:
    ts = draw(tws.timestamps)
    if draw(st.booleans()):
        return BookSnapshot(
            "p",
            draw(tws.symbols),
            ts,
            ts + 1,
            draw(st.lists(st.tuples(decimals, decimals), max_size=5)),
            draw(st.lists(st.tuples(decimals, decimals), max_size=5)),
            draw(st.one_of(st.none(), st.integers(0, 2**63 - 1))),
        )
    return BookDelta(
        "p",
        draw(tws.symbols),
        ts,
        ts,
        draw(st.lists(st.tuples(st.sampled_from(["bid", "ask"]), decimals, decimals), max_size=5)),
        draw(st.one_of(st.none(), st.integers(0, 2**63 - 1))),
    )


gaps = st.builds(
    Gap,
    st.text(min_size=1),
    st.text(min_size=1),
    st.sampled_from(["trades", "candles:1m", "book"]),
    tws.timestamps,
    tws.timestamps,
    st.sampled_from(["sequence", "disconnect", "candle", "startup"]),
    st.sampled_from(["open", "filled", "empty", "failed"]),
    st.one_of(st.none(), st.text()),
)
any_event = st.one_of(
    tws.trades(),
    tws.quotes(),
    tws.candles(),
    books(),
    gaps,
    st.builds(
        Trade,
        st.text(min_size=1),
        st.text(min_size=1),
        tws.timestamps,
        tws.timestamps,
        decimals,
        decimals,
        st.sampled_from(["buy", "sell", None]),
        st.one_of(st.none(), st.text()),
    ),
    st.builds(
        Quote,
        st.just("p"),
        tws.symbols,
        tws.timestamps,
        tws.timestamps,
        nullable,
        nullable,
        nullable,
        nullable,
    ),
)


def same(a: object, b: object) -> bool:
    """Equal, and every Decimal the same text (exponent and trailing zeros included)."""
    return a == b and repr(msgspec.to_builtins(a, builtin_types=(Decimal,))) == repr(
        msgspec.to_builtins(b, builtin_types=(Decimal,))
    )


@given(any_event)
def test_wire_round_trip_is_exact(event: Event) -> None:
    payload = encode(event)
    back = decode(payload)
    assert type(back) is type(event)
    assert same(back, event)
    (normalized,) = normalize(payload, 0)
    assert same(normalized, event)


@given(any_event)
def test_subject_names_kind_provider_and_symbol(event: Event) -> None:
    subject = subject_for("tickwire", event)
    tokens = subject.split(".")
    assert len(tokens) == 4 and all(tokens)
    kind, provider, symbol = parse_subject("tickwire", subject)
    assert (provider, symbol) == (event.provider, event.symbol)
    assert kind == tokens[1]


@given(tws.trades(), st.integers(1, 10**9))
def test_message_id_ignores_the_receive_time(trade: Trade, later: int) -> None:
    copy = msgspec.structs.replace(trade, received_ts=trade.received_ts + later)
    assert message_id(copy) == message_id(trade)


def test_trade_id_is_the_identity_and_time_is_part_of_it() -> None:
    t = Trade("p", "S", 1, 2, Decimal(1), Decimal(1), "buy", "7")
    assert message_id(t) == message_id(msgspec.structs.replace(t, price=Decimal(2)))
    assert message_id(t) != message_id(msgspec.structs.replace(t, trade_id="8"))
    assert message_id(t) != message_id(msgspec.structs.replace(t, ts=3))
    assert message_id(t) != message_id(msgspec.structs.replace(t, symbol="T"))
    assert message_id(t) != message_id(msgspec.structs.replace(t, provider="q"))
    anonymous = msgspec.structs.replace(t, trade_id=None)
    assert message_id(anonymous) != message_id(msgspec.structs.replace(anonymous, size=Decimal(2)))


@given(tws.candles(), tws.prices)
def test_updated_candle_gets_a_new_id_and_a_replay_the_same(candle: Candle, price: Decimal) -> None:
    assert message_id(msgspec.structs.replace(candle)) == message_id(candle)
    closed = msgspec.structs.replace(candle, closed=not candle.closed)
    assert message_id(closed) != message_id(candle)
    if price != candle.close:
        moved = msgspec.structs.replace(candle, close=price)
        assert message_id(moved) != message_id(candle)


def test_gap_status_change_gets_through() -> None:
    gap = Gap("p", "S", "trades", 1, 2, "disconnect")
    assert message_id(gap) != message_id(msgspec.structs.replace(gap, status="filled"))
    assert message_id(gap) == message_id(msgspec.structs.replace(gap, end=3))


def test_a_failed_gap_travels_with_its_reason_and_an_older_writers_gap_still_reads() -> None:
    failed = Gap("p", "S", "trades", 1, 2, "disconnect", "failed", "HTTP 403: not on this plan")
    assert decode(encode(failed)) == failed
    assert message_id(failed) != message_id(msgspec.structs.replace(failed, status="open"))
    # msgpack/1 as a writer from before ``detail`` existed sent it: a map without that field.
    old = msgspec.msgpack.encode(
        {
            "type": "Gap",
            "provider": "p",
            "symbol": "S",
            "kind": "trades",
            "start": 1,
            "end": 2,
            "reason": "disconnect",
            "status": "empty",
        }
    )
    assert decode(old) == Gap("p", "S", "trades", 1, 2, "disconnect", "empty")


def test_ids_of_different_kinds_never_collide() -> None:
    quote = Quote("p", "S", 1, 1, None, None, None, None)
    delta = BookDelta("p", "S", 1, 1, [], None)
    snap = BookSnapshot("p", "S", 1, 1, [], [], None)
    assert len({message_id(quote), message_id(delta), message_id(snap)}) == 3


def test_normalizer_rejects_what_it_cannot_read() -> None:
    assert list(normalize(b"", 0)) == []
    with pytest.raises(MalformedFrame, match="msgpack/2"):
        normalize(b"\xc1msgpack/2\n\x80", 0)
    with pytest.raises(MalformedFrame, match="not a msgpack/1 event"):
        normalize(b"\x93\x01\x02\x03", 0)
    with pytest.raises(MalformedFrame, match="bytes"):
        normalize("text", 0)
