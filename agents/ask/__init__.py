"""Answering a question over a corpus, as a Run: ``plan`` (check, measure, search, route), ``read`` (the
router's reads as corpus-tool calls), ``generate`` (prompts and the model call), ``escalate`` (Self-Route
along the fallback chain), ``cite`` and ``record``. ``ask`` is the routed entry, ``ask_agent`` the one
where the model plans its own reading."""

from corral.agents.ask.agent import ask_agent
from corral.agents.ask.answer import ask
from corral.agents.ask.options import AskOptions
from corral.agents.ask.progress import RunCancelled
from corral.agents.ask.record import MAX_QUESTION_CHARS, AskResult
from corral.agents.citations import Citation
from corral.agents.routing import Decision, Strategy, choose_strategy

__all__ = [
    "MAX_QUESTION_CHARS", "AskOptions", "AskResult", "Citation", "Decision", "RunCancelled", "Strategy",
    "ask", "ask_agent",
    "choose_strategy",
]
