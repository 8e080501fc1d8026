"""Golden cases for normalizers: ``cases/<name>/frames.jsonl`` paired with ``expected.jsonl``.

Each line of ``frames.jsonl`` is one raw frame as the provider sends it (text). Each line of
``expected.jsonl`` is one item the normalizer must emit, in order:

* an event, as :func:`tickwire.events.to_json` writes it (``{"type": "Trade", ...}``);
* a control item, as ``{"control": "Heartbeat", ...its fields}``;
* ``{"malformed": "<words the reason contains>"}`` for a frame that must raise
  :class:`~tickwire.protocols.MalformedFrame`.

Comparison is by content (decimals compare as values, ``"1.50"`` keeps its text), never by
count alone. Write a case's expected file once with :func:`write_expected`, then review it by
hand before committing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tickwire.events import EVENT_TYPES, from_json, to_json
from tickwire.protocols import MalformedFrame, Normalizer

#: The receive time handed to the normalizer for every frame of a case.
RECEIVED_TS = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class Case:
    """One golden case folder."""

    name: str
    frames: Path
    expected: Path


def iter_cases(folder: Path) -> Iterator[Case]:
    """Every ``<folder>/<name>/frames.jsonl`` (sorted by name), for ``pytest.mark.parametrize``."""
    for frames in sorted(folder.glob("*/frames.jsonl")):
        yield Case(frames.parent.name, frames, frames.parent / "expected.jsonl")


def _as_comparable(item: Any) -> Any:
    if isinstance(item, EVENT_TYPES):
        return json.loads(to_json(item))
    return {"control": type(item).__name__, **json.loads(msgspec.json.encode(item))}


def run_frames(normalizer: Normalizer, frames: Path, received_ts: int = RECEIVED_TS) -> list[Any]:
    """What ``normalizer`` makes of each line of ``frames``, as JSON-comparable objects."""
    out: list[Any] = []
    for line in frames.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            items = list(normalizer(line, received_ts))
        except MalformedFrame as exc:
            out.append({"malformed": str(exc)})
            continue
        out.extend(_as_comparable(item) for item in items)
    return out


def read_expected(path: Path) -> list[Any]:
    """The expected items of a case; events are re-encoded so equal values compare equal."""
    out: list[Any] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        data = json.loads(line)
        if isinstance(data, dict) and "type" in data and "control" not in data:
            data = json.loads(to_json(from_json(line)))
        out.append(data)
    return out


def check_case(
    case: Case, make_normalizer: Callable[[], Normalizer], received_ts: int = RECEIVED_TS
) -> None:
    """Assert that a fresh normalizer turns the case's frames into exactly its expected items."""
    got = run_frames(make_normalizer(), case.frames, received_ts)
    want = read_expected(case.expected)
    for index, (g, w) in enumerate(zip(got, want, strict=False)):
        if "malformed" in w and "malformed" in g:
            assert w["malformed"].lower() in g["malformed"].lower(), (
                f"{case.name}: item {index}: MalformedFrame {g['malformed']!r} "
                f"does not say {w['malformed']!r}"
            )
            continue
        assert g == w, f"{case.name}: item {index} differs:\n  got  {g}\n  want {w}"
    assert len(got) == len(want), (
        f"{case.name}: {len(got)} items, expected {len(want)}; "
        f"extra: {got[len(want) :] or want[len(got) :]}"
    )


def write_expected(
    case: Case, make_normalizer: Callable[[], Normalizer], received_ts: int = RECEIVED_TS
) -> None:
    """Write what the normalizer emits now as the case's expected file (review it by hand!)."""
    lines = [
        json.dumps(item, separators=(",", ":"))
        for item in run_frames(make_normalizer(), case.frames, received_ts)
    ]
    case.expected.write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = (
    "RECEIVED_TS",
    "Case",
    "check_case",
    "iter_cases",
    "read_expected",
    "run_frames",
    "write_expected",
)
