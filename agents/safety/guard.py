"""The guard model: a safety classifier served by an OpenAI-compatible server (vLLM, Ollama, SGLang).

No classifier with its weights inside a Python package is used here, so the classifier stage is a
model the operator serves, spoken to over the chat-completions API in one of two published formats:

* ``prompt-guard`` (Meta's Prompt Guard 86M / Prompt Guard 2): a sequence classifier whose labels are
  ``BENIGN``, ``INJECTION`` and ``JAILBREAK`` (Prompt Guard 2: benign / malicious, ``LABEL_0`` /
  ``LABEL_1``). Served behind a chat API it answers with the label as text. For third-party text (a
  retrieved passage, a tool's output) any label but benign flags it: Meta's card says INJECTION is the
  label for "out of place" instructions inside data.
* ``llama-guard`` (Llama Guard 3 and 4): a chat model that answers ``safe``, or ``unsafe`` with a line
  of violated categories (``S1,S10``). Its task prompt is the one published with the model (Meta's
  Llama Guard 3 model card, "Prompt formats", and the chat template of ``meta-llama/Llama-Guard-3-8B``
  on Hugging Face, where the S1-S14 list is fixed). Servers that load the model's own chat template
  build that prompt from plain messages (``prompt="server"``, the default: a user message, and for an
  answer the user's question and the assistant's answer); for a server without it,
  ``prompt="client"`` sends the rendered task prompt as one user message.

Every failure to get a verdict (connection refused, timeout, an error status, an answer that is
neither a label nor ``safe``/``unsafe``, a body past :data:`MAX_REPLY_BYTES`) is
:class:`GuardUnavailable`; what a run does then is the operator's choice (``on_error``), recorded on
the run either way.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from corral.core.errors import CorralError

__all__ = [
    "LLAMA_GUARD_CATEGORIES", "GuardClassifier", "GuardConfig", "GuardFormat", "GuardUnavailable",
    "Verdict", "guard_messages", "llama_guard_prompt", "parse_llama_guard", "parse_prompt_guard",
]

GuardFormat = Literal["prompt-guard", "llama-guard"]
MAX_REPLY_BYTES = 64 * 1024  # a verdict is a few words: a larger body is not one
MAX_MODERATED_CHARS = 8000  # of the question and of the answer sent for moderation

# Llama Guard 3's hazard categories (MLCommons taxonomy), as its published prompt lists them. Llama
# Guard 4 uses S1-S13 with the same names: a server running it never answers S14.
LLAMA_GUARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex Crimes", "S4": "Child Exploitation",
    "S5": "Defamation", "S6": "Specialized Advice", "S7": "Privacy", "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons", "S10": "Hate", "S11": "Self-Harm", "S12": "Sexual Content",
    "S13": "Elections", "S14": "Code Interpreter Abuse",
}
_PROMPT_GUARD_LABELS = {
    "BENIGN": "benign", "LABEL_0": "benign", "INJECTION": "injection", "LABEL_1": "injection",
    "JAILBREAK": "jailbreak", "LABEL_2": "jailbreak", "MALICIOUS": "injection",
}
_CATEGORY = re.compile(r"^S\d{1,2}$")


class GuardUnavailable(CorralError):
    """The guard gave no verdict: it is down, too slow, answered an error, or answered nonsense."""


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Where the guard model is and what it is asked. ``screen``: classify retrieved text and tool
    output; ``answers``: moderate each answer (Llama Guard format, with ``answer_model`` or ``model``).
    ``on_error``: ``open`` lets text or an answer through unchecked, ``closed`` treats it as flagged;
    both are recorded on the run. ``max_chars`` is the longest text one call classifies (longer text is
    classified in windows of it), ``max_calls`` the calls one run may make for screening."""

    url: str
    model: str
    format: GuardFormat = "prompt-guard"
    answer_model: str | None = None
    api_key: str | None = None
    screen: bool = True
    answers: bool = False
    timeout_s: float = 10.0
    on_error: Literal["open", "closed"] = "open"
    max_chars: int = 2000
    max_calls: int = 32
    prompt: Literal["server", "client"] = "server"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A guard's answer: ``label`` is benign/injection/jailbreak (Prompt Guard) or safe/unsafe (Llama
    Guard); ``categories`` the Llama Guard codes violated."""

    flagged: bool
    label: str
    categories: tuple[str, ...] = ()

    def describe(self) -> str:
        """``unsafe: S1 Violent Crimes, S7 Privacy`` or ``injection``: what a run records."""
        if not self.categories:
            return self.label
        named = ", ".join(f"{c} {LLAMA_GUARD_CATEGORIES[c]}" if c in LLAMA_GUARD_CATEGORIES else c
                          for c in self.categories)
        return f"{self.label}: {named}"


def llama_guard_prompt(role: Literal["User", "Agent"], turns: list[tuple[str, str]]) -> str:
    """The published Llama Guard 3 task prompt assessing the last ``role`` message of ``turns``
    (``(speaker, text)`` pairs, speaker ``User`` or ``Agent``)."""
    categories = "\n".join(f"{code}: {name}." for code, name in LLAMA_GUARD_CATEGORIES.items())
    conversation = "\n\n".join(f"{speaker}: {text}" for speaker, text in turns)
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according our "
        "safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def guard_messages(fmt: GuardFormat, prompt: Literal["server", "client"], text: str,
                   answer: str | None = None) -> list[dict[str, str]]:
    """The chat messages that ask the guard about ``text`` (a passage, or the question when
    ``answer`` is given: then the answer is what is assessed, as Llama Guard's 'Agent')."""
    if fmt == "prompt-guard" and answer is None:
        return [{"role": "user", "content": text}]
    if prompt == "server":
        messages = [{"role": "user", "content": text}]
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return messages
    if answer is None:
        return [{"role": "user", "content": llama_guard_prompt("User", [("User", text)])}]
    return [{"role": "user", "content": llama_guard_prompt("Agent", [("User", text), ("Agent", answer)])}]


def parse_prompt_guard(reply: str) -> Verdict:
    """A Prompt Guard label as text (``INJECTION``, ``label: BENIGN``, ``{"label": "JAILBREAK",
    "score": 0.99}``). Anything else is :class:`GuardUnavailable`."""
    raw = reply.strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("label"), str):
            raw = data["label"]
    words = re.findall(r"[A-Za-z_0-9]+", raw.upper())
    for word in words[:3]:
        label = _PROMPT_GUARD_LABELS.get(word)
        if label is not None:
            return Verdict(label != "benign", label)
    raise GuardUnavailable(f"the guard's answer is not a Prompt Guard label: {_short(reply)!r}")


def parse_llama_guard(reply: str) -> Verdict:
    """``safe``, or ``unsafe`` and a line of categories. Anything else is :class:`GuardUnavailable`."""
    lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
    first = lines[0].lower().rstrip(".") if lines else ""
    if first == "safe":
        return Verdict(False, "safe")
    if first != "unsafe":
        raise GuardUnavailable(f"the guard's answer is neither 'safe' nor 'unsafe': {_short(reply)!r}")
    codes = [c.strip().upper() for c in lines[1].split(",")] if len(lines) > 1 else []
    return Verdict(True, "unsafe", tuple(c for c in codes if _CATEGORY.match(c))[:14])


def _short(text: str) -> str:
    return text[:120]


class GuardClassifier:
    """Asks the guard model, one blocking call at a time, within ``timeout_s`` for the whole call."""

    def __init__(self, config: GuardConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport

    def classify(self, text: str) -> Verdict:
        """The guard's verdict on ``text`` (retrieved or tool output), in the configured format."""
        c = self.config
        reply = self._complete(c.model, guard_messages(c.format, c.prompt, text))
        return parse_prompt_guard(reply) if c.format == "prompt-guard" else parse_llama_guard(reply)

    def moderate(self, question: str, answer: str) -> Verdict:
        """Llama Guard's verdict on ``answer`` to ``question`` (its 'Agent' assessment)."""
        c = self.config
        messages = guard_messages("llama-guard", c.prompt, question[:MAX_MODERATED_CHARS],
                                  answer[:MAX_MODERATED_CHARS])
        return parse_llama_guard(self._complete(c.answer_model or c.model, messages))

    def _complete(self, model: str, messages: list[dict[str, str]]) -> str:
        c = self.config
        headers = {"Authorization": f"Bearer {c.api_key}"} if c.api_key else {}
        body = {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": 24, "stream": False}
        deadline = time.monotonic() + c.timeout_s
        url = c.url.rstrip("/") + "/chat/completions"
        try:
            with httpx.Client(transport=self._transport, timeout=c.timeout_s) as client, \
                    client.stream("POST", url, json=body, headers=headers) as response:
                data = bytearray()
                # The timeout bounds each read; the deadline bounds a server that drips bytes.
                for block in response.iter_bytes():
                    data += block
                    if len(data) > MAX_REPLY_BYTES:
                        raise GuardUnavailable(f"the guard's answer is over {MAX_REPLY_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise GuardUnavailable(f"the guard did not answer within {c.timeout_s:g} s")
        except httpx.TimeoutException as exc:
            raise GuardUnavailable(f"the guard did not answer within {c.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise GuardUnavailable(f"the guard at {c.url} cannot be reached: {exc}") from exc
        if response.status_code != 200:
            raise GuardUnavailable(f"the guard answered HTTP {response.status_code}: "
                                   f"{_short(bytes(data).decode('utf-8', 'replace'))!r}")
        return _content(bytes(data))


def _content(data: bytes) -> str:
    try:
        content = json.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise GuardUnavailable(f"the guard's answer is not a chat completion: "
                               f"{_short(data.decode('utf-8', 'replace'))!r}") from exc
    if not isinstance(content, str):
        raise GuardUnavailable("the guard's answer has no text")
    return content
