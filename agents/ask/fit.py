"""Fitting a prompt into the window: measure what the model will really see, trim until it fits.

The router plans in tokens of stored chunks; the model sees those chunks inside a chat template, with
headers, instructions and the question. ``fit_passages`` renders the real messages, counts them with
the backend's own renderer where it has one (the embedded engine) or its tokenizer plus a per-message
allowance (a remote server), and drops the least relevant passages — cutting the last one short when a
single passage is too long — until the prompt and the answer fit the window. An overflow is the
planner's problem, never the user's: the run records what was trimmed and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from langchain_core.language_models import BaseChatModel

from corral.agents.retrieval import Passage

__all__ = ["Fitted", "fit_passages", "prompt_tokens"]

Messages = list[dict[str, str]]
PER_MESSAGE_TOKENS = 8  # role markers and separators a remote chat template adds per message
MIN_PASSAGE_TOKENS = 32  # a passage cut shorter than this is dropped instead


def prompt_tokens(chat: BaseChatModel, messages: Sequence[Mapping[str, str]]) -> int:
    """Tokens ``messages`` take as a prompt: the engine's rendered chat template, exactly; otherwise the
    backend's token count of each message plus an allowance for the template."""
    render = getattr(chat, "prompt_ids", None)
    if callable(render):
        return len(render(messages))
    return sum(chat.get_num_tokens(m["content"]) + PER_MESSAGE_TOKENS for m in messages)


@dataclass(slots=True)
class Fitted:
    passages: list[Passage]
    messages: Messages
    tokens: int  # the prompt as measured
    planned_tokens: int  # the passages' own tokens as planned
    dropped: list[str] = field(default_factory=list)  # labels left out
    cut: str | None = None  # the label of a passage cut short

    @property
    def trimmed(self) -> bool:
        return bool(self.dropped) or self.cut is not None


def fit_passages(
    chat: BaseChatModel,
    passages: Sequence[Passage],
    build: Callable[[Sequence[Passage]], Messages],
    limit: int,
) -> Fitted:
    """``passages`` (and the messages ``build`` makes of them) trimmed until the prompt takes at most
    ``limit`` tokens. Drops the lowest-scored passage first (ties: the last in reading order); a sole
    passage left over the limit is cut by lines. Numbers are kept, so citations still resolve."""
    kept = list(passages)
    planned = sum(p.tokens for p in kept)
    messages = build(kept)
    tokens = prompt_tokens(chat, messages)
    out = Fitted(kept, messages, tokens, planned)
    while tokens > limit and kept:
        if len(kept) == 1:
            cut = _cut(chat, kept[0], tokens - limit)
            if cut is None:
                out.dropped.append(kept.pop().label)
            else:
                out.cut = kept[0].label
                kept[0] = cut
        else:
            worst = min(range(len(kept)), key=lambda i: (kept[i].score or 0.0, -i))
            out.dropped.append(kept.pop(worst).label)
        messages = build(kept)
        tokens = prompt_tokens(chat, messages)
    out.passages, out.messages, out.tokens = kept, messages, tokens
    return out


def _cut(chat: BaseChatModel, p: Passage, over: int) -> Passage | None:
    """``p`` without enough trailing lines to save ``over`` tokens (estimated from its own density, with
    a margin), or None when too little would be left."""
    total = max(chat.get_num_tokens(p.text), 1)
    keep = total - over - max(16, over // 10)
    if keep < MIN_PASSAGE_TOKENS:
        return None
    lines = p.text.splitlines(keepends=True)
    chars = int(len(p.text) * keep / total)
    text, used = "", 0
    for n, line in enumerate(lines):
        if used + len(line) > chars:
            if n == 0:  # one long line: cut inside it
                text = line[:chars]
            break
        text += line
        used += len(line)
    kept_lines = max(text.count("\n"), 1)
    return replace(p, end_line=min(p.end_line, p.start_line + kept_lines - 1), text=text, tokens=keep)
