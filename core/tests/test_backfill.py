"""The backfill worker: overlapping gaps fetched once, failed gaps with their reason."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire._runner.backfill import MAX_TRIES, BackfillWorker
from tickwire.events import Event, Gap, Trade
from tickwire.gaps import GapDetector, group_gaps, split_rows
from tickwire.history import merge
from tickwire.metrics import Metrics
from tickwire.protocols import BackfillRefused, Heartbeat

pytestmark = pytest.mark.anyio

S = 1_000_000_000


class Recorder:
    """A backfill hook that records every fetch and returns one trade per second it covers,
    except in the seconds listed in ``quiet``; ``fail`` makes the next fetches raise."""

    def __init__(self, quiet: frozenset[int] = frozenset()) -> None:
        self.fetched: list[Gap] = []
        self.quiet = quiet
        self.fail: list[Exception] = []

    async def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        self.fetched.append(gap)
        if self.fail:
            raise self.fail.pop(0)
        for second in range(-(-gap.start // S), -(-gap.end // S)):
            if second not in self.quiet:
                ts = second * S
                yield Trade(gap.provider, gap.symbol, ts, ts, Decimal(1), Decimal(1), None, None)


class Store:
    """What the worker publishes: events, and gap rows by their key (last write wins)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.rows: dict[tuple[str, str, str, int], Gap] = {}
        self.changed = anyio.Event()

    async def publish(self, events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, Gap):
                self.rows[(e.provider, e.symbol, e.kind, e.start)] = e
            else:
                self.events.append(e)
        self.changed.set()
        self.changed = anyio.Event()


def worker_for(hook: Recorder, store: Store, **kw: object) -> BackfillWorker:
    return BackfillWorker("src", hook, store.publish, Metrics(), **kw)  # type: ignore[arg-type]


def by_key(spans: Sequence[Gap]) -> dict[tuple[str, str, str], list[tuple[int, int]]]:
    out: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for g in spans:
        out.setdefault((g.provider, g.symbol, g.kind), []).append((g.start, g.end))
    return out


gap_lists = st.lists(
    st.builds(
        lambda sym, kind, start, length: Gap(
            "p", sym, kind, start * S, (start + length) * S, "sequence"
        ),
        st.sampled_from(["A", "B"]),
        st.sampled_from(["trades", "candles:1m"]),
        st.integers(0, 60),
        st.integers(1, 15),
    ),
    max_size=25,
)


def assert_fetched_the_union_once(gaps: list[Gap], hook: Recorder, store: Store) -> None:
    want = {k: merge(v) for k, v in by_key(gaps).items()}
    fetched = by_key(hook.fetched)
    # The fetches of a key are its union, piece for piece: nothing missed, nothing twice (two
    # pieces that touch would have been one fetch).
    assert {k: sorted(v) for k, v in fetched.items()} == want
    rows = by_key(list(store.rows.values()))
    for key, spans in rows.items():
        spans.sort()
        # The stored rows of a key cover its union exactly, and no span twice.
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
        assert merge(spans) == want[key]
    # Every gap found is resolved under its own key (a row stored open gets its outcome).
    assert {(g.provider, g.symbol, g.kind, g.start) for g in gaps} == set(store.rows)
    assert {r.status for r in store.rows.values()} <= {"filled", "empty"}


@settings(max_examples=200, deadline=None)
@given(gap_lists)
def test_queued_gaps_are_fetched_as_their_union_once(gaps: list[Gap]) -> None:
    hook, store = Recorder(), Store()

    async def go() -> None:
        worker = worker_for(hook, store)
        worker.submit(gaps)
        assert worker.pending == len(gaps)
        await worker.drain()
        assert worker.pending == 0

    anyio.run(go)
    assert_fetched_the_union_once(gaps, hook, store)


@settings(max_examples=100, deadline=None)
@given(gap_lists, st.data())
def test_waiting_gaps_that_overlap_are_released_together(gaps: list[Gap], data) -> None:
    dues = [data.draw(st.integers(0, 5)) for _ in gaps]
    hook, store = Recorder(), Store()

    async def go() -> None:
        worker = worker_for(hook, store)
        for due, gap in zip(dues, gaps, strict=True):
            worker.submit_at(due, gap)
        for now in range(6):
            worker.release_due(now)
            await worker.drain()
        assert not worker._later

    anyio.run(go)
    assert_fetched_the_union_once(gaps, hook, store)


def test_a_run_not_all_due_waits_for_its_last_gap() -> None:
    early = Gap("p", "A", "candles:1m", 0, 120, "sequence")
    late = Gap("p", "A", "candles:1m", 60, 180, "sequence")
    apart = Gap("p", "A", "candles:1m", 300, 360, "sequence")
    worker = worker_for(Recorder(), Store())
    worker.submit_at(10, early)
    worker.submit_at(20, late)
    worker.submit_at(10, apart)
    assert worker.release_due(10) == 1  # only the one that overlaps nothing still waiting
    assert worker.release_due(19) == 0
    assert worker.release_due(20) == 2
    assert [g.start for g in worker._ready[("p", "A", "candles:1m")]] == [300, 0, 60]


class Coalescing(Recorder):
    """A hook whose trades gaps at most ``within`` apart cost no more fetched as one."""

    def __init__(self, within: int, quiet: frozenset[int] = frozenset()) -> None:
        super().__init__(quiet)
        self.within = within

    def coalesce_within(self, kind: str) -> int | None:
        return self.within if kind == "trades" else None


def coalesce(spans: list[tuple[int, int]], within: int) -> list[tuple[int, int]]:
    """Disjoint sorted spans joined where the distance between two is at most ``within``."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and start - out[-1][1] <= within:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


@settings(max_examples=200, deadline=None)
@given(gap_lists, st.sampled_from([0, 3 * S, 1 << 62]))
def test_apart_gaps_the_backfiller_coalesces_cost_one_fetch_and_hand_on_only_their_events(
    gaps: list[Gap], within: int
) -> None:
    hook, store = Coalescing(within), Store()

    async def go() -> None:
        worker = worker_for(hook, store)
        worker.submit(gaps)
        await worker.drain()

    anyio.run(go)
    union = {k: merge(v) for k, v in by_key(gaps).items()}
    want = {k: coalesce(v, within) if k[2] == "trades" else v for k, v in union.items()}
    assert {k: sorted(v) for k, v in by_key(hook.fetched).items()} == want
    # Only what lies inside a gap is handed on, once: the stretches between were not missing.
    # (The hook answers every kind with one trade per second: compare per symbol.)
    handed: dict[tuple[str, str], list[int]] = {}
    for e in store.events:
        assert isinstance(e, Trade)
        handed.setdefault((e.provider, e.symbol), []).append(e.ts)
    inside: dict[tuple[str, str], list[int]] = {}
    for (provider, symbol, _), spans in union.items():
        for a, b in spans:
            seconds = range(-(-a // S), -(-b // S))
            inside.setdefault((provider, symbol), []).extend(x * S for x in seconds)
    assert {k: sorted(v) for k, v in handed.items()} == {k: sorted(v) for k, v in inside.items()}
    # Every gap found is resolved under its own row, the rows of a key cover its union exactly.
    rows = by_key(list(store.rows.values()))
    for key, spans in rows.items():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
        assert merge(spans) == union[key]
    assert {(g.provider, g.symbol, g.kind, g.start) for g in gaps} == set(store.rows)
    assert {r.status for r in store.rows.values()} == ({"filled"} if gaps else set())


async def test_coalesced_gaps_say_filled_or_empty_each_by_what_came_in_them() -> None:
    hook, store = Coalescing(1 << 62, quiet=frozenset(range(40, 50))), Store()
    worker = worker_for(hook, store)
    worker.submit(
        [
            Gap("p", "A", "trades", 0, 5 * S, "disconnect"),
            Gap("p", "A", "trades", 40 * S, 50 * S, "disconnect"),  # nothing traded here
            Gap("p", "A", "trades", 90 * S, 92 * S, "sequence"),
        ]
    )
    await worker.drain()
    assert [(g.start, g.end) for g in hook.fetched] == [(0, 92 * S)]  # one request, not three
    assert sorted((r.start, r.end, r.status) for r in store.rows.values()) == [
        (0, 5 * S, "filled"),
        (40 * S, 50 * S, "empty"),
        (90 * S, 92 * S, "filled"),
    ]
    assert sorted(e.ts // S for e in store.events) == [0, 1, 2, 3, 4, 90, 91]


async def test_coalesced_gaps_that_fail_are_failed_each_under_its_own_row() -> None:
    hook, store = Coalescing(1 << 62), Store()
    hook.fail = [BackfillRefused("no history this far back")]
    worker = worker_for(hook, store)
    worker.submit(
        [
            Gap("p", "A", "trades", 0, 5 * S, "sequence"),
            Gap("p", "A", "trades", 9 * S, 10 * S, "sequence"),
        ]
    )
    await worker.drain()
    assert len(hook.fetched) == 1
    assert sorted((r.start, r.end, r.status) for r in store.rows.values()) == [
        (0, 5 * S, "failed"),
        (9 * S, 10 * S, "failed"),
    ]


async def test_merged_rows_say_filled_or_empty_each_by_what_came_in_it() -> None:
    hook, store = Recorder(quiet=frozenset(range(10, 20))), Store()
    worker = worker_for(hook, store)
    gaps = [
        Gap("p", "A", "trades", 0, 12 * S, "sequence"),
        Gap("p", "A", "trades", 10 * S, 20 * S, "disconnect"),  # nothing traded in 10..19
        Gap("p", "A", "trades", 20 * S, 25 * S, "sequence"),  # touches: the same fetch
    ]
    worker.submit(gaps)
    await worker.drain()
    assert [(g.start, g.end) for g in hook.fetched] == [(0, 25 * S)]
    assert [(r.start, r.end, r.status) for r in store.rows.values()] == [
        (0, 10 * S, "filled"),
        (10 * S, 20 * S, "empty"),
        (20 * S, 25 * S, "filled"),
    ]
    assert len(store.events) == 15


async def test_a_refused_gap_is_failed_with_the_providers_reason_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook, store = Recorder(), Store()
    hook.fail = [BackfillRefused("candle history needs a premium plan")]
    worker = worker_for(hook, store, retry_failed=(0.0,))
    gap = Gap("p", "A", "candles:1m", 0, 60 * S, "candle")
    with caplog.at_level(logging.WARNING, logger="tickwire"):
        worker.submit([gap])
        await worker.drain()
    assert list(store.rows.values()) == [
        msgspec.structs.replace(gap, status="failed", detail="candle history needs a premium plan")
    ]
    assert len(hook.fetched) == 1
    assert not worker._later  # a refusal is not queued again
    assert worker.release_due(2**62) == 0
    (failed,) = [r for r in caplog.records if getattr(r, "event", None) == "gap.failed"]
    assert failed.detail == "candle history needs a premium plan"  # type: ignore[attr-defined]
    assert failed.fields["reason"] == "refused"  # type: ignore[attr-defined]
    assert failed.fields["symbol"] == "A" and failed.fields["kind"] == "candles:1m"  # type: ignore[attr-defined]


async def test_a_gap_that_keeps_failing_is_failed_with_the_last_error_then_heals() -> None:
    hook, store = Recorder(), Store()
    hook.fail = [ConnectionError("connection reset")] * (MAX_TRIES - 1) + [
        TimeoutError("REST read timed out")
    ]
    worker = worker_for(hook, store, retry_failed=(0.0,), backoff=(0.001, 0.001))
    gaps = [
        Gap("p", "A", "trades", 0, 5 * S, "sequence"),
        Gap("p", "A", "trades", 3 * S, 9 * S, "sequence"),
    ]
    worker.submit(gaps)
    await worker.drain()
    assert len(hook.fetched) == MAX_TRIES
    assert [(r.start, r.end, r.status, r.detail) for r in store.rows.values()] == [
        (0, 3 * S, "failed", "TimeoutError: REST read timed out"),
        (3 * S, 9 * S, "failed", "TimeoutError: REST read timed out"),
    ]
    # Queued again for later (here: at once); the provider is back, so both rows get filled.
    assert worker.release_due(2**62) == 2
    await worker.drain()
    assert [(r.start, r.status, r.detail) for r in store.rows.values()] == [
        (0, "filled", None),
        (3 * S, "filled", None),
    ]
    assert len(hook.fetched) == MAX_TRIES + 1


async def test_after_the_last_round_a_failed_gap_stays_failed() -> None:
    hook, store = Recorder(), Store()
    hook.fail = [OSError("down")] * (3 * MAX_TRIES)
    worker = worker_for(hook, store, retry_failed=(0.0, 0.0), backoff=(0.001, 0.001))
    worker.submit([Gap("p", "A", "trades", 0, S, "sequence")])
    for _ in range(3):
        await worker.drain()
        worker.release_due(2**62)
    assert len(hook.fetched) == 3 * MAX_TRIES
    assert [r.status for r in store.rows.values()] == ["failed"]
    assert not worker._later and not worker.pending


async def test_the_running_worker_retries_a_failed_gap_by_itself() -> None:
    hook, store = Recorder(), Store()
    hook.fail = [OSError("down")] * MAX_TRIES
    worker = worker_for(hook, store, retry_failed=(0.0,), backoff=(0.001, 0.001))
    gap = Gap("p", "A", "trades", 0, 2 * S, "sequence")
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            worker.submit([gap])
            while [r.status for r in store.rows.values()] != ["filled"]:
                await store.changed.wait()
            tg.cancel_scope.cancel()
    assert len(store.events) == 2


def test_bootstrap_fill_of_a_failed_span_is_not_queued_again() -> None:
    hook, store = Recorder(), Store()
    hook.fail = [BackfillRefused("no")]

    async def go() -> None:
        worker = worker_for(hook, store, retry_failed=(0.0,))
        assert await worker.fill(Gap("p", "A", "candles:1m", 0, 60 * S, "startup")) == 0
        hook.fail = [OSError("x")] * MAX_TRIES
        worker.backoff = (0.001, 0.001)
        await worker.fill(Gap("p", "A", "candles:1m", 60 * S, 120 * S, "startup"))
        assert not worker._later

    anyio.run(go)
    assert [r.status for r in store.rows.values()] == ["failed", "failed"]


# ---- the detector never reports a span twice -------------------------------------------------


@st.composite
def trade_streams(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Trades with ids that mostly go up (holes, repeats, out-of-order times), heartbeats and
    disconnects, for one or two symbols."""
    steps: list[tuple[str, object]] = []
    ids = {"A": 0, "B": 0}
    for _ in range(draw(st.integers(0, 40))):
        sym = draw(st.sampled_from(["A", "B"]))
        what = draw(st.sampled_from(["trade", "trade", "trade", "heartbeat", "lost"]))
        if what == "trade":
            ids[sym] += draw(st.integers(-1, 4))
            ts = draw(st.integers(0, 200)) * S
            steps.append(
                ("trade", Trade("p", sym, ts, ts, Decimal(1), Decimal(1), None, str(ids[sym])))
            )
        elif what == "heartbeat":
            steps.append(
                (
                    "heartbeat",
                    (sym, ids[sym] + draw(st.integers(0, 3)), draw(st.integers(0, 200)) * S),
                )
            )
        else:
            steps.append(("lost", (sym, draw(st.integers(0, 200)) * S)))
    return steps


@settings(max_examples=300, deadline=None)
@given(trade_streams(), st.booleans())
def test_detected_gaps_of_a_symbol_never_overlap(steps, sequential: bool) -> None:
    detector = GapDetector("p", sequential=sequential)
    found: list[Gap] = []
    for what, item in steps:
        if what == "trade":
            found += detector.process([item])  # type: ignore[list-item]
        elif what == "heartbeat":
            sym, tid, ts = item  # type: ignore[misc]
            found += detector.heartbeat(
                Heartbeat("p", symbol=sym, last_trade_id=str(tid), ts=ts), ts
            )
        else:
            sym, ts = item  # type: ignore[misc]
            detector.disconnected([sym], ts)
    for spans in by_key(found).values():
        spans = sorted((s, e) for s, e in spans if e > s)  # an inverted span holds nothing
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


def test_a_gap_inside_one_already_reported_is_cut_to_its_new_part() -> None:
    detector = GapDetector("p", sequential=True)
    t = lambda ts, tid: Trade("p", "A", ts * S, ts * S, Decimal(1), Decimal(1), None, str(tid))  # noqa: E731
    assert detector.process([t(0, 1)]) == []
    assert detector.process([t(10, 5)]) == [Gap("p", "A", "trades", 0, 10 * S, "sequence")]
    # A late trade moves nothing back: the next hole starts where the last report ended.
    assert detector.process([t(4, 8), t(20, 12)]) == [
        Gap("p", "A", "trades", 10 * S, 20 * S, "sequence")
    ]


def test_trades_seen_before_are_marked_replayed_for_the_batch_only() -> None:
    detector = GapDetector("p", sequential=True)
    t = lambda ts, tid, sym="A": Trade("p", sym, ts, ts, Decimal(1), Decimal(1), None, str(tid))  # noqa: E731
    first = [t(1, 1), t(2, 2), t(2, 7, "B")]
    assert detector.process(first) == [] and detector.replayed == []
    again = [t(2, 2), t(3, 3), t(2, 7, "B"), t(1, 1)]  # a reconnect's last_match, then more
    assert detector.process(again) == []
    assert detector.replayed == [again[0], again[2], again[3]]
    assert detector.process([t(4, 4)]) == [] and detector.replayed == []
    unsequenced = GapDetector("p", sequential=False)
    assert unsequenced.process(first + first) == [] and unsequenced.replayed == []


def test_missing_trades_within_one_timestamp_are_still_reported_once() -> None:
    detector = GapDetector("p", sequential=True)
    t = lambda ts, tid: Trade("p", "A", ts, ts, Decimal(1), Decimal(1), None, str(tid))  # noqa: E731
    assert detector.process([t(5, 1)]) == []
    assert detector.process([t(5, 3)]) == [Gap("p", "A", "trades", 5, 5, "sequence")]
    assert detector.process([t(5, 6)]) == []  # the same instant, already reported
    assert detector.process([t(9, 9)]) == [Gap("p", "A", "trades", 5, 9, "sequence")]


def test_split_rows_partition_a_run_by_its_starts() -> None:
    a = Gap("p", "A", "trades", 0, 10, "sequence")
    b = Gap("p", "A", "trades", 5, 8, "sequence")
    c = Gap("p", "A", "trades", 5, 15, "disconnect")
    (run,) = group_gaps([c, a, b])
    assert [(g.start, g.end) for g in split_rows(run)] == [(0, 5), (5, 15)]
    assert group_gaps([a, Gap("p", "B", "trades", 0, 10, "sequence")]) != [[a]]
