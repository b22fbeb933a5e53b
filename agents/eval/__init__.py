"""The evaluation harness: tasks with known evidence, and evidence recall vs tokens per strategy."""

from corral.agents.eval.harness import EvalReport, TaskOutcome, evaluate, evidence_recall
from corral.agents.eval.prose import prose_tasks, write_novels
from corral.agents.eval.tasks import EvalTask, code_tasks, load_tasks, needle_tasks, save_tasks

__all__ = [
    "EvalReport", "EvalTask", "TaskOutcome", "code_tasks", "evaluate", "evidence_recall", "load_tasks",
    "needle_tasks", "prose_tasks", "save_tasks", "write_novels",
]
