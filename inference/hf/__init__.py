"""The transformers-backed reference backend (a ``TextEngine``): what the embedded engine is checked
and measured against, and the fallback where the engine cannot load a model."""

from corral.inference.hf.chat_model import HFChatModel

__all__ = ["HFChatModel"]
