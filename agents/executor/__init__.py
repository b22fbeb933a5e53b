"""The plan executor: runs tool calls within budgets, records every step, screens what comes back."""

from corral.agents.executor.budget import Budget, BudgetExceeded, Usage
from corral.agents.executor.executor import ExecutionResult, PlanExecutor, Step, ToolOutcome
from corral.agents.executor.screening import Screened, screen

__all__ = [
    "Budget", "BudgetExceeded", "ExecutionResult", "PlanExecutor", "Screened", "Step", "ToolOutcome",
    "Usage", "screen",
]
