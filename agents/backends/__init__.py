"""Chat backends for agents: the embedded engine as a LangChain model, remote OpenAI-compatible servers."""

from corral.agents.backends.adapter import LangChainChatModel
from corral.agents.backends.engine_chat import EngineChatModel
from corral.agents.backends.remote import remote_chat_model

__all__ = ["EngineChatModel", "LangChainChatModel", "remote_chat_model"]
