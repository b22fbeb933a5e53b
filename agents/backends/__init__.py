"""Chat backends for agents: the embedded engine as a LangChain model, remote OpenAI-compatible servers."""

from corral.agents.backends.adapter import LangChainChatModel
from corral.agents.backends.engine_chat import EngineChatModel
from corral.agents.backends.prefix import PrefixProbe, can_probe, probe_prefix_cache
from corral.agents.backends.remote import remote_chat_model

__all__ = [
    "EngineChatModel", "LangChainChatModel", "PrefixProbe", "can_probe", "probe_prefix_cache",
    "remote_chat_model",
]
