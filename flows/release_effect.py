"""A release's effect report (PROCESSES.md, section 4, step 8): the key figures of the days
before the release and of the days after it, compared, for the customer.

Scheduled by the release once it has finished, as a run of the contract's ``release-effect``
deployment that Prefect's server starts ``effect_report_days`` (3) later, so it survives
restarts; or started by hand (``upkeep releases effect ID``, the UI). It reads the records
(the interface monitor's probes, the findings, the inspections' system-log counts), writes the
HTML report, publishes it as an artifact, mails it to the contract's recipients and records the
``effect-report`` step. A release that has not finished, or released nothing, is refused.
Each run writes a report of its own.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.flows.starting import start_or_refuse
from upkeep.models import utcnow
from upkeep.tasks.release_effect import (
    effect_figures,
    finished_release,
    mail_effect_report,
    publish_effect_report,
    record_effect_report,
    release_contract,
    write_effect_report,
)
from upkeep.tasks.runs import run_name, run_params


class EffectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_id: int = Field(description="The finished release (upkeep releases show)")
    email: bool = Field(True, description="Mail the report to the contract's recipients")


class EffectOutcome(BaseModel):
    release_id: int
    report_path: str
    verdict: str
    """better, same, worse or not measured."""
    headline: str
    email: dict[str, Any] | None = None


def effect_run_name() -> str:
    """``release effect · ACME · release 7`` (``?`` for a contract that cannot be read: the
    flow itself says what is wrong)."""
    release_id = run_params().get("release_id")
    try:
        code: str | None = release_contract(int(str(release_id)))
    except Exception:
        code = None  # a name must never fail the run
    return run_name("release effect", {"contract": code}, f"release {release_id}")


@flow(name="release-effect", flow_run_name=effect_run_name)
def release_effect(params: EffectParams) -> EffectOutcome | State[Any]:
    """Compare the key figures before and after the release; report, artifact, mail, step."""
    started = start_or_refuse(lambda: finished_release(params.release_id))
    if isinstance(started, State):
        return started
    rid = params.release_id
    effect = effect_figures(rid, utcnow())
    path = write_effect_report(rid, effect)
    publish_effect_report(effect, path)
    mail = mail_effect_report(rid, effect, path) if params.email else None
    record_effect_report(rid, effect, path)
    get_run_logger().info("%s: %s", effect.headline, path)
    return EffectOutcome(
        release_id=rid,
        report_path=path,
        verdict=effect.verdict,
        headline=effect.headline,
        email=mail,
    )
