"""The normalizer on golden cases: ``cases/<name>/frames.jsonl`` -> ``expected.jsonl``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.testing import check_case, iter_cases
from tickwire.testing.cases import Case
from tickwire_example.normalize import ExampleNormalizer

CASES = list(iter_cases(Path(__file__).parent / "cases"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case) -> None:
    check_case(case, ExampleNormalizer)


def test_every_case_folder_is_complete() -> None:
    assert {c.name for c in CASES} == {"control", "malformed", "trades"}
    assert all(c.expected.is_file() for c in CASES)
