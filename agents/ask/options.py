"""Per-deployment knobs of a routed ask (from settings); costs are per 1,000 tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.agents.ask import prompts
from corral.agents.ask.planning import PlanSettings
from corral.agents.executor import Budget

__all__ = ["AskOptions"]


@dataclass(frozen=True, slots=True)
class AskOptions:
    max_new_tokens: int = 160
    top_k: int = 8
    expand_limit: int = 512  # widen a hit to its function/section/file when that costs <= this
    backend: str = "embedded"
    prefix_cached: bool = False  # declared; a backend whose prefix cache can be asked is asked instead
    cost_per_1k_input: float = 0.0
    cost_per_1k_cached_input: float = 0.0
    cost_per_1k_output: float = 0.0
    max_map_calls: int = 16
    self_route_turns: int = 3  # model turns with the corpus tools when Self-Route escalates (0: none)
    budget: Budget = field(default_factory=Budget)

    def plan_settings(self, question_tokens: int) -> PlanSettings:
        return PlanSettings(
            top_k=self.top_k, expand_limit=self.expand_limit, prefix_cached=self.prefix_cached,
            cost_per_1k_input=self.cost_per_1k_input, cost_per_1k_cached_input=self.cost_per_1k_cached_input,
            cost_per_1k_output=self.cost_per_1k_output, max_new_tokens=self.max_new_tokens,
            per_call_overhead=prompts.PROMPT_OVERHEAD + question_tokens, max_map_calls=self.max_map_calls,
        )
