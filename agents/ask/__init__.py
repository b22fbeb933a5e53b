"""Answering a question over a corpus: route, read with the tools, generate, self-route, cite — as a Run."""

from corral.agents.ask.agent import ask_agent
from corral.agents.ask.answer import ask
from corral.agents.ask.options import AskOptions
from corral.agents.ask.record import MAX_QUESTION_CHARS, AskResult
from corral.agents.citations import Citation
from corral.agents.routing import Decision, Strategy, choose_strategy

__all__ = [
    "MAX_QUESTION_CHARS", "AskOptions", "AskResult", "Citation", "Decision", "Strategy",
    "ask", "ask_agent", "choose_strategy",
]
