"""Answering a question over a corpus: route (stuff or retrieve), build the context, generate, cite."""

from corral.agents.ask.answer import AskResult, Citation, ask
from corral.agents.ask.model import ChatModel
from corral.agents.ask.router import Decision, Strategy, choose_strategy

__all__ = ["AskResult", "ChatModel", "Citation", "Decision", "Strategy", "ask", "choose_strategy"]
