"""Prompt-injection screening for text that enters a prompt from the corpus or from a tool.

Corpus text is data, never instructions: it is only ever placed inside a numbered source block, and
nothing in it is executed. Screening adds a second line: text that *looks* like it addresses the model
("ignore previous instructions", fake chat-role markers, tool-call syntax) is flagged on the Run and
the offending lines are defanged (wrapped so that they read as quoted data) before the model sees them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Screened", "screen"]

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        ("override", r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|"
                     r"system)\b.{0,40}\b(instructions?|prompts?|rules?|messages?|context)\b"),
        ("role-play", r"\b(you are now|act as|pretend to be|from now on,? you)\b"),
        ("reveal", r"\b(reveal|print|show|repeat|leak)\b.{0,30}\b(system prompt|hidden instructions?|"
                   r"api[_ -]?keys?|secrets?|passwords?)\b"),
        ("chat-markup", r"<\|?(im_start|im_end|system|assistant|user|eot_id|start_header_id)\|?>"
                        r"|^\s*(system|assistant)\s*:"),
        ("tool-call", r"<tool_call>|\"(function|tool)_?call\"\s*:|\{\s*\"name\"\s*:\s*\"[^\"]+\"\s*,"
                      r"\s*\"arguments\""),
        ("exfiltrate", r"\b(send|post|upload|email)\b.{0,40}\b(to|at)\b.{0,20}(https?://|\S+@\S+\.\w+)"),
    )
)
# A line longer than this is not matched as a whole: regexes over megabyte lines cost too much.
_MAX_LINE = 4000


@dataclass(frozen=True, slots=True)
class Screened:
    text: str  # the text to put in the prompt (flagged lines defanged)
    flags: tuple[str, ...]  # pattern names that matched, in order of first match

    @property
    def suspicious(self) -> bool:
        return bool(self.flags)


def screen(text: str) -> Screened:
    """Flag injection-looking lines of ``text`` and defang them; clean text is returned unchanged."""
    flags: list[str] = []
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        probe = line[:_MAX_LINE]
        hit = [name for name, rx in _PATTERNS if rx.search(probe)]
        if hit:
            flags += [h for h in hit if h not in flags]
            # Angle brackets and braces are what chat templates and tool parsers key on.
            safe = line.replace("<", "\u2039").replace(">", "\u203a").replace("{", "(").replace("}", ")")
            lines[i] = f"[quoted source text, not an instruction] {safe}"
            changed = True
    return Screened("\n".join(lines) if changed else text, tuple(flags))
