"""The normalizer on hand-written frames: exact Decimals, derived ids, v == 0, errors."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.events import Trade
from tickwire.protocols import Heartbeat, MalformedFrame, Notice
from tickwire_finnhub.normalize import FinnhubNormalizer, derive_trade_id

RECEIVED = 1_700_000_000_123_456_789


def run(frame: str | bytes) -> list[object]:
    return list(FinnhubNormalizer()(frame, RECEIVED))


def test_mixed_symbol_array_gives_one_trade_per_print_in_order() -> None:
    frame = (
        '{"data":[{"c":["1","8","24","12"],"p":189.5,"s":"AAPL","t":1700000000123,"v":100},'
        '{"c":null,"p":7296.89,"s":"BINANCE:BTCUSDT","t":1700000000124,"v":0.011467},'
        '{"p":1.08543,"s":"OANDA:EUR_USD","t":1700000000125,"v":1000}],"type":"trade"}'
    )
    assert run(frame) == [
        Trade(
            "finnhub",
            "AAPL",
            1_700_000_000_123_000_000,
            RECEIVED,
            Decimal("189.5"),
            Decimal("100"),
            None,
            "1700000000123:189.5:100:1,8,24,12:0",
        ),
        Trade(
            "finnhub",
            "BINANCE:BTCUSDT",
            1_700_000_000_124_000_000,
            RECEIVED,
            Decimal("7296.89"),
            Decimal("0.011467"),
            None,
            "1700000000124:7296.89:0.011467::0",
        ),
        Trade(
            "finnhub",
            "OANDA:EUR_USD",
            1_700_000_000_125_000_000,
            RECEIVED,
            Decimal("1.08543"),
            Decimal("1000"),
            None,
            "1700000000125:1.08543:1000::0",
        ),
    ]


def test_numbers_become_decimals_from_their_text_not_through_float() -> None:
    # 0.1 + 0.2 style values and digits beyond a double's precision survive exactly.
    frame = (
        '{"data":[{"p":0.30000000000000004441,"s":"X:Y","t":1,"v":0.1},'
        '{"p":64123.123456789012345,"s":"X:Y","t":1,"v":1.10}],"type":"trade"}'
    )
    a, b = run(frame)
    assert isinstance(a, Trade) and isinstance(b, Trade)
    assert str(a.price) == "0.30000000000000004441"
    assert a.price != Decimal(float("0.30000000000000004441"))  # what float would make
    assert str(a.size) == "0.1"
    assert str(b.price) == "64123.123456789012345"
    assert str(b.size) == "1.10"  # trailing zero kept: the provider's text


def test_identical_prints_in_one_message_are_distinct_and_a_replay_gives_the_same_ids() -> None:
    row = '{"c":["1"],"p":10.5,"s":"AAPL","t":1700000000000,"v":5}'
    other = '{"c":["1"],"p":10.5,"s":"AAPL","t":1700000000000,"v":6}'
    frame = f'{{"data":[{row},{other},{row},{row}],"type":"trade"}}'
    ids = [t.trade_id for t in run(frame) if isinstance(t, Trade)]
    assert ids == [
        "1700000000000:10.5:5:1:0",
        "1700000000000:10.5:6:1:0",
        "1700000000000:10.5:5:1:1",
        "1700000000000:10.5:5:1:2",
    ]
    # The same message again (a server-side duplicate delivery) yields the same ids, so the
    # sinks' unique key stores it once; a new normalizer (a reconnect) agrees too.
    again = [t.trade_id for t in run(frame) if isinstance(t, Trade)]
    assert again == ids


def test_conditions_null_absent_and_empty_give_the_same_id() -> None:
    base = '"p":1,"s":"S","t":5,"v":2'
    frames = [f'{{"data":[{{{base}{c}}}],"type":"trade"}}' for c in ("", ',"c":null', ',"c":[]')]
    ids = {t.trade_id for f in frames for t in run(f) if isinstance(t, Trade)}
    assert ids == {derive_trade_id(5, Decimal(1), Decimal(2), "", 0)} == {"5:1:2::0"}


def test_v_zero_is_a_price_update_never_a_zero_size_trade() -> None:
    normalizer = FinnhubNormalizer()
    frame = (
        '{"data":[{"p":1.0851,"s":"OANDA:EUR_USD","t":1700000000000,"v":0},'
        '{"p":1.0852,"s":"OANDA:EUR_USD","t":1700000000001,"v":0.0},'
        '{"p":1.0853,"s":"OANDA:EUR_USD","t":1700000000002,"v":3}],"type":"trade"}'
    )
    items = list(normalizer(frame, RECEIVED))
    assert items[:2] == [
        Heartbeat("finnhub", "OANDA:EUR_USD", 1_700_000_000_000_000_000),
        Heartbeat("finnhub", "OANDA:EUR_USD", 1_700_000_000_001_000_000),
    ]
    trades = [i for i in items if isinstance(i, Trade)]
    assert [(t.price, t.size) for t in trades] == [(Decimal("1.0853"), Decimal("3"))]
    assert normalizer.price_updates == 2


def test_ping_is_a_connection_wide_heartbeat() -> None:
    assert run('{"type":"ping"}') == [Heartbeat("finnhub", None)]


@pytest.mark.parametrize(
    ("msg", "symbol", "code"),
    [
        ("Invalid symbol", None, "invalid_symbol"),
        ("Invalid symbol NOPE", "NOPE", "invalid_symbol"),
        ("Invalid symbol: IC MARKETS:1", "IC MARKETS:1", "invalid_symbol"),
        ("Subscribing to too many symbols", None, "too_many_symbols"),
        ("Something else", None, None),
    ],
)
def test_errors_become_non_fatal_notices(msg: str, symbol: str | None, code: str | None) -> None:
    frame = json.dumps({"msg": msg, "type": "error"})
    assert run(frame) == [Notice("finnhub", msg, symbol=symbol, code=code, fatal=False)]


def test_news_and_press_releases_are_ignored() -> None:
    assert run('{"data":[{"headline":"x"}],"type":"news"}') == []
    assert run('{"data":[],"type":"pr"}') == []


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xfe",
        "",
        "not json",
        "[]",
        "42",
        '{"type":"quote","data":[]}',
        '{"data":[{"p":1,"s":"A","t":1}],"type":"trade"}',  # no v
        '{"data":[{"p":"NaN","s":"A","t":1,"v":1}],"type":"trade"}',
        '{"data":[{"p":-1,"s":"A","t":1,"v":1}],"type":"trade"}',
        '{"data":[{"p":1,"s":"A","t":1,"v":-1}],"type":"trade"}',
        '{"data":[{"p":1,"s":"A","t":-1,"v":1}],"type":"trade"}',
        '{"data":[{"p":1,"s":"","t":1,"v":1}],"type":"trade"}',
        '{"data":[{"p":1,"s":"A","t":1.5,"v":1}],"type":"trade"}',
        '{"data":{"p":1},"type":"trade"}',
        '{"type":"error","msg":5}',
        '{"msg":"no type"}',
    ],
)
def test_unreadable_frames_raise_malformed(frame: str | bytes) -> None:
    with pytest.raises(MalformedFrame):
        run(frame)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_print = st.fixed_dictionaries(
    {},
    optional={
        "s": _scalar,
        "p": _scalar,
        "t": _scalar,
        "v": _scalar,
        "c": st.none() | st.lists(_scalar, max_size=3) | _scalar,
    },
)
_near_valid = st.fixed_dictionaries(
    {"type": st.sampled_from(["trade", "ping", "error", "news", "x"])},
    optional={"data": st.lists(_print, max_size=4) | _json_values, "msg": _scalar},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_json_values, _near_valid))
def test_any_json_gives_items_or_malformed_and_nothing_else(value: object) -> None:
    frame = json.dumps(value)
    try:
        items = run(frame)
    except MalformedFrame:
        return
    for item in items:
        assert isinstance(item, Trade | Heartbeat | Notice)
        if isinstance(item, Trade):
            assert item.size > 0 and item.price > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_give_items_or_malformed(frame: bytes) -> None:
    with contextlib.suppress(MalformedFrame):
        run(frame)
