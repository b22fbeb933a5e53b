"""Everything a routed ask is configured with, in one object: from settings to the router's inputs.
Costs are per 1,000 tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.agents.executor import Budget
from corral.core.config import Settings
from corral.core.services import DEFAULT_WORKSPACE

__all__ = ["AskOptions"]


@dataclass(frozen=True, slots=True)
class AskOptions:
    max_new_tokens: int = 160
    top_k: int = 8  # the hits the router's signals, scoped-stuff and the search tool look at
    retrieve_tokens: int = 8192  # retrieve fills its context up to this (and the window's budget)
    expand_limit: int = 512  # widen a hit to its function/section/file when that costs <= this
    neighbours: int = 1
    scope_docs: int = 8  # scoped-stuff reads the documents of the best hits, at most this many
    backend: str = "embedded"
    prefix_cached: bool = False  # declared; a backend whose prefix cache can be asked is asked instead
    cost_per_1k_input: float = 0.0
    cost_per_1k_cached_input: float = 0.0
    cost_per_1k_output: float = 0.0
    max_map_calls: int = 16
    self_route_turns: int = 3  # model turns with the corpus tools when Self-Route escalates (0: none)
    budget: Budget = field(default_factory=Budget)
    reading_budget: int | None = None  # tokens of sources one answer reads at most (None: the window's)
    reading_source: str | None = None  # where that number comes from, for the decision's reasons
    workspace: str = DEFAULT_WORKSPACE  # whose corpus the question is asked of

    @classmethod
    def from_settings(cls, s: Settings) -> AskOptions:
        reading, source = s.reading_budget()
        return cls(
            reading_budget=reading, reading_source=source,
            max_new_tokens=s.chat_max_new_tokens, top_k=s.retrieve_top_k,
            expand_limit=s.retrieve_expand_tokens, backend=s.chat_backend,
            prefix_cached=s.backend_prefix_cached, cost_per_1k_input=s.backend_cost_per_1k_input,
            cost_per_1k_cached_input=s.backend_cost_per_1k_cached_input,
            cost_per_1k_output=s.backend_cost_per_1k_output, max_map_calls=s.map_calls(),
            self_route_turns=s.self_route_tool_turns,
            budget=Budget(s.agent_max_steps, s.agent_max_tokens, s.agent_max_seconds),
        )
