"""Safety around the model: the prompt-injection screen (patterns, then an optional guard model) and
the output guard that may withhold an answer. Every decision is recorded on the run."""

from corral.agents.safety.guard import (
    GuardClassifier,
    GuardConfig,
    GuardUnavailable,
    Verdict,
    guard_messages,
    llama_guard_prompt,
    parse_llama_guard,
    parse_prompt_guard,
)
from corral.agents.safety.moderate import guards_answers, moderate_answer
from corral.agents.safety.screen import InjectionScreen, RunScreen

__all__ = [
    "GuardClassifier", "GuardConfig", "GuardUnavailable", "InjectionScreen", "RunScreen", "Verdict",
    "guard_messages", "guards_answers", "llama_guard_prompt", "moderate_answer", "parse_llama_guard",
    "parse_prompt_guard",
]
