"""What the agents need from a chat backend; the embedded model and remote servers both fit it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from corral.inference.hf import Generation


class ChatModel(Protocol):
    name: str
    context_window: int

    def count_tokens(self, text: str) -> int: ...

    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int) -> Generation: ...
