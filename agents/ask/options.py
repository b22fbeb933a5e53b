"""Everything a routed ask is configured with, in one object: from settings to the router's inputs.
Costs are per 1,000 tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.agents.executor import Budget
from corral.agents.safety import GuardConfig
from corral.core.config import Settings
from corral.core.services import DEFAULT_WORKSPACE

__all__ = ["AskOptions", "guard_config"]


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
    guard: GuardConfig | None = None  # the guard model: screens what is read, moderates answers
    # Images sent beside OCR'd passages (an OpenAI-compatible vision backend only): per model call at
    # most this many and this many bytes, each counted as ``vision_image_tokens`` of the window.
    vision: bool = False
    vision_max_images: int = 4
    vision_max_bytes: int = 4 * 1024 * 1024
    vision_image_tokens: int = 1200

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
            guard=guard_config(s),
            # The embedded engine reads text only, whatever is declared.
            vision=s.chat_vision and s.chat_backend == "openai", vision_max_images=s.chat_vision_max_images,
            vision_max_bytes=s.chat_vision_max_bytes, vision_image_tokens=s.chat_vision_image_tokens,
        )


def guard_config(s: Settings) -> GuardConfig | None:
    """The guard model the settings configure (``CORRAL_GUARD_*``), or None when there is none or it
    is asked nothing."""
    if not s.guard_url or not (s.guard_screen or s.guard_answers):
        return None
    return GuardConfig(
        url=s.guard_url, model=s.guard_model or "", format=s.guard_format,
        answer_model=s.guard_answer_model,
        api_key=s.guard_api_key.get_secret_value() if s.guard_api_key else None,
        screen=s.guard_screen, answers=s.guard_answers, timeout_s=s.guard_timeout_s,
        on_error=s.guard_on_error, max_chars=s.guard_max_chars, max_calls=s.guard_max_calls,
        prompt=s.guard_prompt,
    )
