"""Chat backends for agents, all LangChain ``BaseChatModel``: the embedded engine in-process
(``EngineChatModel``), remote OpenAI-compatible servers (``ChatOpenAI``)."""

from corral.agents.backends.engine_chat import EngineChatModel
from corral.agents.backends.facts import context_window, model_name, prefill_rate
from corral.agents.backends.prefix import PrefixProbe, can_probe, probe_prefix_cache
from corral.agents.backends.remote import remote_chat_model

__all__ = [
    "EngineChatModel", "PrefixProbe", "can_probe", "context_window", "model_name", "prefill_rate",
    "probe_prefix_cache", "remote_chat_model",
]
