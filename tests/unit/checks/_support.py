"""Helpers shared by the check tests: fixture loading and running a check on raw output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from upkeep.domain.checks import CHECKS_BY_NAME
from upkeep.domain.checks.base import (
    CheckOutcome,
    EvalContext,
    RawResult,
    Thresholds,
    evaluate_check,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checks"


@dataclass(frozen=True)
class Fixture:
    check: str
    case: str
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.check}/{self.case}"

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(**self.data.get("thresholds", {}))


def all_fixtures() -> list[Fixture]:
    return [
        Fixture(path.parent.name, path.stem, json.loads(path.read_text()))
        for path in sorted(FIXTURES.glob("*/*.json"))
    ]


def run(
    check_name: str,
    stdout: str,
    exit_code: int = 0,
    thresholds: Thresholds | None = None,
    facts: dict[str, BaseModel] | None = None,
    inspected_at: datetime | None = None,
) -> CheckOutcome:
    check = CHECKS_BY_NAME[check_name]
    raw = RawResult(
        command=check.render(thresholds or Thresholds()), exit_code=exit_code, stdout=stdout
    )
    ctx = EvalContext(inspected_at=inspected_at, facts=facts or {})
    return evaluate_check(check, raw, thresholds or Thresholds(), ctx)


def severities(outcome: CheckOutcome) -> dict[str, str | None]:
    return {m.subject: (m.severity.value if m.severity else None) for m in outcome.measurements}
