"""The batch fast path: ``CoinbaseNormalizer.leading_trades`` and the runner's use of it.

Whatever a batch of frames holds, the runner must end with the same events, in the same order,
and the same frames counted and dead-lettered as when it normalizes them one by one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire._runner.normalize import FrameHandler
from tickwire.candles import CandleBuilder
from tickwire.deadletter import DeadLetter
from tickwire.events import Event, Trade
from tickwire.gaps import GapDetector
from tickwire.metrics import Metrics
from tickwire.protocols import Acked, MalformedFrame
from tickwire_coinbase.normalize import CoinbaseNormalizer

NOW = 1_796_000_000_000_000_000


def _match(i: int, **changes: Any) -> str:
    frame = {
        "type": "match",
        "trade_id": 100 + i,
        "side": "sell" if i % 2 else "buy",
        "size": f"0.{i + 1:08d}",
        "price": f"{100 + i}.50",
        "product_id": "BTC-USD",
        "sequence": 1000 + i,
        "time": f"2026-12-01T18:00:{i % 60:02d}.{i:06d}Z",
    }
    frame.update(changes)
    return json.dumps(frame)


_OTHERS = [
    '{"type":"match","trade_id":"x"',  # unreadable
    _match(0, price="-1"),  # absurd value
    _match(0, size="NaN"),
    _match(0, price="Infinity"),
    _match(0, time="2026-13-01T18:00:00.000000Z"),  # no such month
    _match(0, time="2026-12-01T18:00:00.000000+01:00"),  # a valid offset: still a trade
    _match(0, time="2026-12-01T18:00:00Z"),  # no fraction: still a trade
    _match(0, type="last_match"),  # still a trade
    json.dumps(
        {
            "type": "heartbeat",
            "product_id": "BTC-USD",
            "time": "2026-12-01T18:00:00.1Z",
            "last_trade_id": 5,
            "sequence": 1,
        }
    ),
    json.dumps({"type": "status", "products": []}),  # ignored type
    json.dumps({"type": "ticker", "product_id": "BTC-USD", "best_bid": "1", "best_ask": "2"}),
    _match(0) + " " + _match(1),  # two messages in one frame
    "",
    "[]",
]


def _per_frame(normalize: CoinbaseNormalizer, frame: Any) -> list[Any] | None:
    """What the normalizer makes of one frame (``None``: malformed)."""
    try:
        return list(normalize(frame, NOW))
    except MalformedFrame:
        return None


frames_strategy = st.lists(
    st.one_of(
        st.integers(0, 50).map(_match),
        st.integers(0, 50).map(lambda i: _match(i).encode()),
        st.sampled_from(_OTHERS),
        st.sampled_from(_OTHERS).map(str.encode),
        st.text(max_size=30),
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(frames_strategy)
def test_leading_trades_are_the_per_frame_trades_of_the_leading_run(frames: list[Any]) -> None:
    normalize = CoinbaseNormalizer()
    got = normalize.leading_trades(frames, NOW)
    assert len(got) <= len(frames)
    for trade, frame in zip(got, frames, strict=False):
        assert _per_frame(normalize, frame) == [trade]
    if len(got) < len(frames):
        # It stopped at a frame that is not exactly one trade (or at a valid trade it left to
        # the per-frame path; never at a plain Coinbase match written as Coinbase does).
        rest = frames[len(got)]
        plain = isinstance(rest, (str, bytes)) and (
            rest in [_match(i) for i in range(51)]
            or rest in [_match(i).encode() for i in range(51)]
        )
        assert not plain


def test_leading_trades_stops_at_an_acked_frame() -> None:
    normalize = CoinbaseNormalizer()
    acked = Acked(_match(2), lambda: None)
    assert len(normalize.leading_trades([_match(0), _match(1), acked, _match(3)], NOW)) == 2


class _PerFrame:
    """The coinbase normalizer without ``leading_trades``."""

    def __init__(self) -> None:
        self._normalize = CoinbaseNormalizer()

    def __call__(self, frame: Any, received_ts: int) -> Any:
        return self._normalize(frame, received_ts)


class _Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.commits = 0

    async def __call__(self, events: Sequence[Event], on_commit: Any = None) -> None:
        self.events.extend(events)
        if on_commit is not None:
            on_commit()


def _without_clock(event: Event) -> Event:
    """``event`` with the receive time (the clock's, per batch) and any time taken from it
    (a ticker without ``time``) set to 0."""
    received = getattr(event, "received_ts", None)
    if received is None:
        return event
    changes = {f: 0 for f in ("ts", "received_ts") if getattr(event, f) == received}
    return msgspec.structs.replace(event, **changes)


def _note(commits: list[int], i: int) -> Any:
    return lambda: commits.append(i)


async def _through_stage(
    tmp_path: Path, batches: list[list[Any]], *, fast: bool
) -> tuple[list[Event], float, list[str], int]:
    # Without the fast path (a plain callable): the per-frame reference.
    normalize: Any = CoinbaseNormalizer() if fast else _PerFrame()
    metrics = Metrics()
    out = _Collect()
    commits: list[int] = []
    deadletter = DeadLetter(tmp_path / ("fast" if fast else "slow"))
    handler = FrameHandler(
        "coinbase",
        "coinbase",
        normalize,
        GapDetector("coinbase", sequential=True),
        CandleBuilder(["1m"]),
        out,
        lambda gaps: None,
        deadletter,
        metrics,
    )
    for batch in batches:
        frames = [
            Acked(f[1], _note(commits, len(commits))) if isinstance(f, tuple) else f for f in batch
        ]
        await handler.handle_batch(frames)
    kept = []
    path = deadletter.path_for("coinbase")
    if path.exists():
        kept = [json.loads(line)["frame"] for line in path.read_text().split("\n") if line]
    events = [_without_clock(e) for e in out.events]
    return events, metrics.value("malformed_total", provider="coinbase"), kept, len(commits)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_batch_ends_as_frame_by_frame(tmp_path: Path, anyio_backend: str) -> None:
    batches = [
        [_match(i) for i in range(10)],  # all trades: the fast path alone
        [_match(10), _match(11), '{"type":"match","trade_id":"x"', _match(12), _match(13)],
        [_match(14, price="-1"), _match(15)],  # the first frame is absurd
        [_match(16), _OTHERS[8], _match(18)],  # a heartbeat in the middle (a gap: 17 missing)
        [_match(19), ("acked", _match(20)), _match(21)],  # an Acked frame
        [_match(22), _match(22), _match(23)],  # a replayed trade
        [],
    ]
    fast = await _through_stage(tmp_path, batches, fast=True)
    slow = await _through_stage(tmp_path, batches, fast=False)
    assert fast[0] == slow[0]
    assert fast[1:] == slow[1:]
    events, malformed, kept, commits = fast
    assert malformed == 2
    assert kept == ['{"type":"match","trade_id":"x"', _match(14, price="-1")]
    assert commits == 1
    trades = [e for e in events if isinstance(e, Trade)]
    ids = [*range(14), 15, 16, 18, 19, 20, 21, 22, 22, 23]
    assert [t.trade_id for t in trades] == [str(100 + i) for i in ids]


@settings(max_examples=150, deadline=None)
@given(st.lists(frames_strategy, max_size=4))
def test_arbitrary_batches_end_as_frame_by_frame(batches: list[list[Any]]) -> None:
    import tempfile

    async def both() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            fast = await _through_stage(Path(tmp), batches, fast=True)
            slow = await _through_stage(Path(tmp), batches, fast=False)
        assert msgspec.json.encode(fast[0]) == msgspec.json.encode(slow[0])
        assert fast[1:] == slow[1:]

    anyio.run(both)
