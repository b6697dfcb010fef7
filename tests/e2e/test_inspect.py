"""Running the catalogue on a real host: one hanging command does not stop the others."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from upkeep.domain.checks import CHECKS_BY_NAME
from upkeep.domain.checks.base import Check, Severity, Thresholds
from upkeep.tasks.inspect import run_catalogue
from upkeep.tasks.ssh import SshSession

pytestmark = pytest.mark.e2e


class Nothing(BaseModel):
    pass


def test_a_hanging_check_is_a_finding_and_the_rest_go_on(
    sshd, target_of, known_hosts_for, ssh_settings
) -> None:
    hang: Check[Nothing] = Check(
        name="hang",
        title="A command that hangs",
        command="sleep 30",
        parse=lambda out: Nothing(),
        evaluate=lambda f, t, c: [],
        timeout=1,
    )
    with SshSession(target_of(sshd), ssh_settings, known_hosts_for(sshd)) as session:
        hung, cpu = run_catalogue(session, Thresholds(), (hang, CHECKS_BY_NAME["cpu"]))
    (finding,) = hung.findings
    assert finding.severity is Severity.MINOR and "timed out" in finding.value
    assert hung.facts is None  # not evaluated: earlier findings of this check stay open
    assert cpu.facts is not None and cpu.facts["count"] >= 1
