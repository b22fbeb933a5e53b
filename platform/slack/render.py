"""What the bot shows in Slack: mrkdwn that document text cannot abuse, the progress line a run's events
tell, and the answer as Block Kit — split within Slack's limits, citations linked to the dashboard's
source view, a strategy and token badge, and the feedback buttons.

Everything that comes from a document, a model or a user goes through :func:`escape`: ``&``, ``<`` and
``>`` become entities, so no text can form ``<!channel>``, ``<!here>``, ``<@U…>``, ``<#C…>`` or a
``<url|label>`` link; the plain words ``@channel``/``@here``/``@everyone`` get an invisible joiner; and
every text object is ``verbatim`` (Slack does not auto-link names or mentions in it). Only the links
built here from the public URL are real links.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = [
    "ANSWER_EVENT",
    "FEEDBACK_DOWN",
    "FEEDBACK_UP",
    "SECTION_CHARS",
    "SHARE",
    "Message",
    "Progress",
    "answer_messages",
    "badge",
    "error_message",
    "escape",
    "notice",
    "sources",
    "split_text",
    "unescape",
]

ANSWER_EVENT = "corral_answer"  # the metadata event type of the bot's answer messages
FEEDBACK_UP, FEEDBACK_DOWN, SHARE = "corral_feedback_up", "corral_feedback_down", "corral_share"
SECTION_CHARS = 2900  # a section's text may hold 3000 characters
MESSAGE_SECTIONS = 4  # answer sections per message (a message holds 50 blocks; readers want fewer)
MAX_SOURCES = 15
FALLBACK_CHARS = 3000  # the notification text of a message

_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_STRATEGY_ICON = {"stuff": ":books:", "retrieve": ":mag:", "scoped-stuff": ":card_index_dividers:",
                  "map-reduce": ":jigsaw:", "agent": ":robot_face:"}


def escape(text: str) -> str:
    """``text`` as mrkdwn that shows it literally: no mention, broadcast or link can come of it."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060\\1", text)


def unescape(text: str) -> str:
    """Slack's message text back to plain text (the three entities Slack escapes)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def answer_mrkdwn(answer: str) -> str:
    """A model's Markdown answer as escaped mrkdwn: ``**bold**`` and headings become Slack's bold."""
    text = escape(answer.strip())
    text = _HEADING.sub(lambda m: f"*{m.group(1)}*", text)
    return _BOLD.sub(lambda m: f"*{m.group(1)}*", text)


def split_text(text: str, limit: int = SECTION_CHARS) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a paragraph, then a line, then a
    space where one is near, never inside an entity such as ``&amp;``."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, limit // 2, limit)
            if cut > 0:
                break
        if cut <= 0:
            cut = limit
            amp = text.rfind("&", cut - 6, cut)
            if amp > 0 and ";" not in text[amp:cut]:
                cut = amp
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip() or not pieces:
        pieces.append(text)
    return pieces


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": value,
                              "text": {"type": "plain_text", "text": text, "emoji": True}}
    if style:
        button["style"] = style
    return button


def source_url(public_url: str, corpus: str, path: str, start: int, end: int) -> str:
    """The dashboard's source view of ``path`` at lines ``start`` to ``end``."""
    return (f"{public_url.rstrip('/')}/corpora/{quote(corpus, safe='')}/documents/"
            f"{quote(path, safe='/')}#L{start}-L{end}")


def shown_citations(citations: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The citations to list as sources: those labelled ``support: cited`` when the run labels them,
    else all of them."""
    if any("support" in c for c in citations):
        return [c for c in citations if c.get("support") == "cited"]
    return list(citations)


def sources(citations: Sequence[Mapping[str, Any]], corpus: str, public_url: str | None) -> str:
    """The sources list in mrkdwn: each citation linked to the dashboard's source view (or shown as
    ``path:lines`` without a public URL); an unverified one flagged with the reason."""
    shown = shown_citations(citations)
    if not shown:
        return "*Sources:* _none cited_"
    lines = []
    for c in shown[:MAX_SOURCES]:
        path, start, end = str(c.get("path", "")), int(c.get("start_line") or 0), int(c.get("end_line") or 0)
        # What people read: an OCR'd source is named by its image ("report.pdf p.4 (figure)").
        label = escape(str(c.get("display") or (f"{path}:{start}-{end}" if start else path)))
        if not c.get("verified", True) or start <= 0:
            note = escape(str(c.get("note") or "not found in the corpus"))
            lines.append(f"• :warning: `{label}` — {note}")
        elif public_url:
            lines.append(f"• <{source_url(public_url, corpus, path, start, end)}|{label}>")
        else:
            lines.append(f"• `{label}`")
    if len(shown) > MAX_SOURCES:
        lines.append(f"_…and {len(shown) - MAX_SOURCES} more_")
    return "*Sources*\n" + "\n".join(lines)


def badge(result: Mapping[str, Any], cost_per_1k: tuple[float, float] = (0.0, 0.0)) -> str:
    """The strategy and what the answer cost: ``:books: stuff · 1,234 tokens · 2.1 s · model``."""
    strategy = str(result.get("strategy") or "?")
    prompt, completion = int(result.get("prompt_tokens") or 0), int(result.get("completion_tokens") or 0)
    parts = [f"{_STRATEGY_ICON.get(strategy, ':gear:')} *{escape(strategy)}*",
             f"{prompt + completion:,} tokens ({prompt:,} in, {completion:,} out)"]
    cost = (prompt * cost_per_1k[0] + completion * cost_per_1k[1]) / 1000
    if cost > 0:
        parts.append(f"${cost:.4f}")
    if result.get("seconds") is not None:
        parts.append(f"{float(result['seconds']):.1f} s")
    if result.get("model"):
        parts.append(escape(str(result["model"])))
    return " · ".join(parts)


@dataclass(slots=True)
class Message:
    """One Slack message: its notification ``text`` and its ``blocks``; ``metadata`` marks answers."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "blocks": self.blocks, "unfurl_links": False,
                               "unfurl_media": False}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


def answer_messages(result: Mapping[str, Any], *, corpus: str, public_url: str | None,
                    cost_per_1k: tuple[float, float] = (0.0, 0.0), share: bool = False,
                    shared_by: str | None = None) -> list[Message]:
    """A finished run's answer as one or more messages (long answers split within Slack's limits);
    the last carries the sources, the badge and the buttons (``share``: the "share in channel" one of
    an answer only its asker sees). Each message's ``text`` is the escaped answer, for notifications
    and for reading the thread back as conversation context."""
    run_id = str(result.get("run_id") or "")
    if result.get("blocked"):  # the final event carries no answer text then: say why, show nothing
        body = f":no_entry: The answer was withheld by the guard: {escape(str(result['blocked']))}"
    else:
        body = answer_mrkdwn(str(result.get("answer") or "")) or "_(the model gave an empty answer)_"
    sections = split_text(body)
    groups = [sections[i:i + MESSAGE_SECTIONS] for i in range(0, len(sections), MESSAGE_SECTIONS)]
    messages: list[Message] = []
    for n, group in enumerate(groups, start=1):
        blocks = [_section(s) for s in group]
        if len(groups) > 1:
            blocks.append(_context(f"part {n} of {len(groups)}"))
        metadata = {"event_type": ANSWER_EVENT, "event_payload": {"run_id": run_id, "part": n}}
        messages.append(Message("\n\n".join(group)[:FALLBACK_CHARS], blocks, metadata))
    last = messages[-1].blocks
    last.append({"type": "divider"})
    for piece in split_text(sources(result.get("citations") or [], corpus, public_url)):
        last.append(_section(piece))
    footer = badge(result, cost_per_1k)
    if shared_by:
        footer += f" · shared by <@{escape(shared_by)}>"
    last.append(_context(footer))
    buttons = [_button(FEEDBACK_UP, ":+1: Helpful", run_id),
               _button(FEEDBACK_DOWN, ":-1: Not helpful", run_id)]
    if share:
        buttons.append(_button(SHARE, "Share in channel", run_id, "primary"))
    last.append({"type": "actions", "block_id": "corral_answer_actions", "elements": buttons})
    return messages


def error_message(reason: str, *, run_id: str | None = None, hint: str | None = None) -> Message:
    """A visible failure: what went wrong and, when there is one, what to do about it."""
    text = f":warning: I could not answer: {escape(reason)}"
    blocks = [_section(text)]
    extra = " · ".join(x for x in (escape(hint) if hint else "", f"run `{run_id}`" if run_id else "") if x)
    if extra:
        blocks.append(_context(extra))
    return Message(text[:FALLBACK_CHARS], blocks)


def notice(text: str) -> Message:
    """A plain message of ours (``text`` is mrkdwn the caller built with :func:`escape`)."""
    return Message(text[:FALLBACK_CHARS], [_section(t) for t in split_text(text)][:MESSAGE_SECTIONS])


@dataclass(slots=True)
class Progress:
    """The progress line of a run, from its events as they come: what it is doing now."""

    corpus: str
    note: str = ""
    state: str = "queued"
    strategy: str = ""
    documents: int | None = None
    reads: int | None = None
    read_done: int = 0
    words: int = 0
    call: str = "answer"
    escalated: str = ""

    def feed(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for kind, data in events:
            if kind == "state":
                self.state = str(data.get("state", self.state))
            elif kind == "decision":
                self.strategy = str(data.get("strategy") or self.strategy)
                inputs = data.get("inputs") or {}
                self.documents = inputs.get("document_count", self.documents)
            elif kind == "step":
                self._step(data)
            elif kind == "token":
                self.words += len(str(data.get("text", "")).split())
                self.call = str(data.get("call") or "answer")

    def _step(self, data: Mapping[str, Any]) -> None:
        step = data.get("step")
        if step == "route":
            self.strategy = str(data.get("strategy") or self.strategy)
        elif step == "read":
            self.reads, self.read_done, self.words = int(data.get("reads") or 0), 0, 0
            self.strategy = str(data.get("strategy") or self.strategy)
        elif step == "tool" and data.get("name") in ("read_document", "read_span"):
            self.read_done += 1
        elif step == "escalate":
            self.escalated = f"the {data.get('source')} context could not answer: trying {data.get('to')}"
            self.strategy, self.reads, self.words = str(data.get("to") or self.strategy), None, 0
        elif step == "read-on":
            self.escalated = "the routed context could not answer: reading on with the corpus tools"
        elif step == "note" and "still indexing" in str(data.get("text", "")):
            self.note = str(data["text"])

    def text(self) -> str:
        corpus = f"*{escape(self.corpus)}*"
        strategy = f" — {escape(self.strategy)}" if self.strategy else ""
        if self.state == "queued":
            line = f":hourglass_flowing_sand: Waiting for a free reader to ask {corpus}…"
        elif self.words:
            what = {"map": "Reading the parts", "reduce": "Combining the parts"}.get(self.call,
                                                                                     "Writing the answer")
            line = f":writing_hand: {what}{strategy}… ({self.words:,} words so far)"
        elif self.reads is not None:
            unit = "passages" if self.strategy == "retrieve" else "documents"
            done = f" ({min(self.read_done, self.reads)} read)" if self.read_done else ""
            line = f":book: Reading {self.reads:,} {unit} of {corpus}{strategy}…{done}"
        elif self.strategy:
            docs = f" ({self.documents:,} documents)" if self.documents else ""
            line = f":compass: Planning how to read {corpus}{docs}{strategy}…"
        else:
            line = f":mag: Looking into {corpus}…"
        extra = [escape(x) for x in (self.escalated, self.note) if x]
        return "\n".join([line, *(f"_{x}_" for x in extra)])
