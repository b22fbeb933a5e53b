"""Asks as runs: submitted, run in the background (a thread of the embedded server, or an agent
worker in server mode), followed through their events, cancelled."""

from corral.platform.runs.dispatch import (
    RunOutcome,
    cancel_run,
    fail_interrupted_embedded_runs,
    hand_off_run,
    submit_run,
    wait_for_run,
)
from corral.platform.runs.execute import error_for, execute_run

__all__ = [
    "RunOutcome", "cancel_run", "error_for", "execute_run", "fail_interrupted_embedded_runs",
    "hand_off_run", "submit_run", "wait_for_run",
]
