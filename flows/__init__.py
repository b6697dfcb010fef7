"""The processes: one Prefect flow module per process (see PROCESSES.md and the README).

The rule that makes suspend/resume safe
---------------------------------------

A run started from a deployment *suspends* at a gate (``upkeep.flows.approvals``): its
process ends, and when the gate is answered Prefect runs the flow again **from the top**, in
a new process, possibly on another machine and after an upgrade of upkeep. So:

    Every step before a gate is either a persisted task (its result comes back from the
    result storage, ``UPKEEP_RESULT_DIR`` or ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``) or
    idempotent by a database key (it finds its own record and does nothing again).

In practice: a step that writes a record (a gate, an event, a claim, a one-time code) first
looks the record up by a key that is the same in every re-run (flow run id, gate name,
round, person) and returns what it finds; a step that sends mail or talks to a host records
that it did so under such a key before (or atomically with) the side effect, so a re-run
never mails, logs in or decides twice. Persisted results alone are not enough: a result
that cannot be read back (another storage, an upkeep release whose task source differs, a
class that moved, see ``upkeep.compat``) is treated by Prefect as missing and the task runs
again, so the step must still be harmless the second time. Work after the last gate runs
once, after the final answer.

Checked per process, not by memory: tests/flows/test_gate_replay.py resumes each gated
process in fresh ``python -m prefect.engine`` processes and counts records and mails (no
second gate, code, claim or mail); tests/flows/test_gate_rule.py fails when a process starts
to gate without being in that test's list; tests/production/test_upgrade.py resumes a run
suspended by the previous release on the current code.
"""
