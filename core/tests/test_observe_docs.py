"""The dashboard and the docs name only metrics tickwire exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tickwire.metrics import REFERENCE
from tickwire.observe.prometheus import STATE_METRICS

DOCS = Path(__file__).parents[2] / "docs"
SUFFIXES = ("_bucket", "_sum", "_count")


def exposed() -> set[str]:
    names = {"tickwire_" + n for n in STATE_METRICS}
    for name, info in REFERENCE.items():
        full = "tickwire_" + name
        names.add(full)
        if info.kind == "histogram":
            names.update(full + s for s in SUFFIXES)
    return names


@pytest.mark.parametrize("doc", ["grafana-dashboard.json", "observability.md"])
def test_every_metric_named_exists(doc: str) -> None:
    path = DOCS / doc
    if not path.exists():
        pytest.skip(f"{path} is not part of this checkout")
    text = path.read_text()
    if doc.endswith(".json"):
        json.loads(text)
    used = set(re.findall(r"tickwire_[a-z_]+", text)) - {"tickwire_coinbase", "tickwire_"}
    assert used, "no metric named"
    assert used <= exposed(), sorted(used - exposed())


def test_every_reference_metric_is_documented() -> None:
    path = DOCS / "observability.md"
    if not path.exists():
        pytest.skip(f"{path} is not part of this checkout")
    text = path.read_text()
    missing = [n for n in (*REFERENCE, *STATE_METRICS) if f"`tickwire_{n}`" not in text]
    assert not missing
