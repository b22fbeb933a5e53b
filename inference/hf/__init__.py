"""The transformers-backed chat model: the reference runtime until the embedded engine replaces it."""

from corral.inference.hf.chat_model import Generation, HFChatModel

__all__ = ["Generation", "HFChatModel"]
