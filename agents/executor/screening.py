"""Prompt-injection screening for text that enters a prompt from the corpus or from a tool: the
pattern stage (free, always on; :mod:`corral.agents.safety` adds the guard-model stage after it).

Corpus text is data, never instructions: it is only ever placed inside a numbered source block, and
nothing in it is executed. Screening adds a second line: text that *looks* like it addresses the model
("ignore previous instructions", fake chat-role markers, tool-call payloads, asking it to reveal its
prompt or to send the conversation somewhere) is flagged on the Run and the offending lines are
defanged (wrapped so that they read as quoted data) before the model sees them.

The patterns are measured on a labelled set of published injection examples and on every chunk of
the CPython standard library, pip and the README (``bench/injection.py``; bench/RESULTS.md): each one
asks for the shape of an instruction aimed at a model (second person, a model addressed by name, an
object such as "your instructions" or "the conversation"), because single words ("ignore", "act as",
"upload ... to https://") are everyday documentation. Markup inside inline code (```...```) is a
documented example, not markup: the chat-markup and tool-call patterns skip it. Special chat-template
tokens (``<|im_start|>``) are neutralised wherever they appear, flagged or not, so that no tokenizer
reads them as the template's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Screened", "defang_all", "screen"]

_MODEL = r"(?:ai|a\.i\.|llms?|language models?|assistants?|chatbots?|bots?|gpts?|agents?|models?)"
_OBJECT = (r"(?:instructions?|prompts?|rules?|directions?|guidelines?|orders?|assignments?|constraints?|"
           r"context|messages?|commands?|programming|policy|policies)")
_QUALIFIER = r"(?:previous|prior|above|earlier|preceding|original|initial|system|safety|operator'?s?|old)"
_FILLER = r"(?:(?:all|any|the|your|of|these|those|my|every)\W+)*"
_SECRETS = (r"(?:system\s+prompt|your\s+(?:\w+\s+){0,2}(?:instructions|prompt|rules|configuration)|"
            r"the\s+(?:system|hidden|initial|original|secret)\s+(?:instructions|prompt|rules)|"
            r"hidden\s+instructions?|(?:the|your|any|my)\s+(?:admin\s+|secret\s+|hidden\s+)?"
            r"(?:passwords?|api[_ -]?keys?|credentials|private\s+keys?)|\.env\s+file|id_rsa)")

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        ("override",
         rf"\b(?:ignore|disregard|forget|override|drop|bypass)\W+{_FILLER}{_QUALIFIER}\W+(?:\w+\W+){{0,2}}"
         rf"{_OBJECT}\b"
         r"|\b(?:ignore|disregard|forget)\W+(?:about\W+)?(?:all|everything)\W+(?:you\W+were\W+told|"
         r"(?:that\W+)?(?:came\W+)?before|above|said|previously|"
         r"the\W+(?:assignments|tasks|orders|instructions|rules)\b)"
         r"|\b(?:ignore|disregard)\W+(?:the|everything)\W+(?:above|foregoing|preceding)\W+(?:and|then|"
         r"instead|now)\b"
         rf"|\b(?:previous|prior|above|earlier|original|old|your)\W+{_OBJECT}\W+(?:are|have\W+been|were|"
         r"no\W+longer)\W+(?:cancell?ed|outdated|void|obsolete|updated|replaced|revoked|apply|lifted|invalid|"
         r"changed|overridden)\b"
         r"|\b(?:vergiss|ignoriere)\b.{0,30}\b(?:alles|anweisungen|vorherigen)\b"
         r"|\b(?:olvida|ignora)\b.{0,30}\b(?:instrucciones|todo\W+lo\W+anterior)\b"),
        ("role-play",
         rf"\b(?:you\W+are|you're)\W+now\W+(?:(?:an?|in|the|my)\W+)?(?:[\w-]+\W+){{0,3}}"
         rf"(?:{_MODEL}|mode|persona|character|terminal|hacker|dan)\b"
         rf"|\bnow\W+you\W+are\W+(?:(?:an?|the|my)\W+)?(?:[\w-]+\W+){{0,3}}(?:{_MODEL}|mode|persona)\b"
         rf"|\b(?:you\W+are|you're)\W+(?:an?\W+)?(?:[\w-]+\W+){{0,3}}{_MODEL}\W+(?:without|with\W+no|"
         r"that\W+(?:leaks|ignores|has\W+no|can\W+do|will\W+do)|who\W+(?:ignores|has\W+no|can\W+do))\b"
         r"|\byou\W+are\W+dan\b"
         r"|\b(?:i\W+want\W+you\W+to|you\W+will|you\W+must|you\W+shall|from\W+now\W+on,?\W+you(?:\W+will)?)"
         r"\W+(?:now\W+)?(?:act|behave|pretend|role-?play)\b"
         r"|\bpretend\W+(?:that\W+)?you\W+are\b|\bpretend\W+to\W+be\W+(?:my|an?\W+(?:unrestricted|unfiltered|"
         r"evil|jailbroken|new))\b"
         r"|\b(?:do\W+anything\W+now|dan\W+mode|jailbreak\W+mode|god\W+mode)\b"
         r"|\b(?:answer|respond|reply|ai|assistant|you)\b.{0,40}\b(?:no|without)\W+(?:any\W+)?(?:content\W+)?"
         r"(?:filters|restrictions|limits|content\W+policy|censorship)\b"),
        ("reveal",
         r"(?<!not )(?<!n't )(?<!never )\b(?:reveal|print|show|repeat|leak|output|tell\W+me|spell|"
         r"give\W+me|read\W+me|display|dump|disclose|(?:reply|respond|answer)\W+with)\b.{0,30}?"
         rf"\b{_SECRETS}\b"),
        ("chat-markup",
         r"<\|(?:im_start|im_end|system|assistant|user|eot_id|eot|start_header_id|end_header_id|"
         r"header_start|header_end|begin_of_text|endoftext)\|>"
         r"|(?-i:\[/?INST\]|<</?SYS>>)|<(?:start|end)_of_turn>|\[system\]\(#"
         r"|</?(?:important|system|instructions?)>"
         r"|^\s*(?-i:System|SYSTEM|Assistant|ASSISTANT|Human|HUMAN)\s*:\s*\S"
         r"|^\s*#{2,}\s*(?:system|instructions?)\s*(?:prompt)?\s*$"),
        ("tool-call",
         r"<tool_call>|\"(?:function|tool)_?call\"\s*:"
         r"|(?:^|>)\s*\{\s*\"name\"\s*:\s*\"[^\"]+\"\s*,\s*\"arguments\""
         r"|\b(?:call|invoke|use|run)\W+the\W+(?:tool|function)\W+\w+\W+with\b"),
        ("addressed",
         r"\b(?:if\W+you\W+are|if\W+you're)\W+(?:an?\W+)?(?:large\W+)?(?:ai|llm|language\W+model|"
         r"ai\W+assistant|chatbot)\b"
         rf"|\b(?:note|message|instructions?|warning|attention)\W+(?:(?:to|for)\W+)?(?:(?:an?|any|the|all|"
         rf"every)\W+)?(?:large\W+|automated\W+|reader\W+)?{_MODEL}\s*[:!,-]"
         r"|\b(?:attention|hi|hello|dear)\W+(?:ai|llm|language\W+model|assistant|chatbot|bot)\b"
         rf"|\b{_MODEL}\W+(?:reading|processing|summari[sz]ing|parsing|browsing|scanning|editing)\W+this\b"
         rf"|\b{_MODEL}\W*[:,]\W*(?:new\W+instructions|you\W+must|your\W+new|do\W+not|don't|ignore|respond|"
         r"reply|answer|forget)\b"
         rf"|\b{_MODEL}\W+instructions?\s*:"
         r"|\b(?:your|my)\W+(?:new|updated|real|true|actual)\W+(?:instructions?|task|objective|goal|rules|"
         r"system\W+prompt)\b"
         r"|(?:^|[.!:]\s+)(?:your\W+)?new\W+(?:instructions?|task)\s*[:.!]"
         r"|\b(?:do\W+not|don't|never|without)\W+(?:tell|telling|inform|informing|alert|notify)\W+the\W+user\b"
         r"|\b(?:do\W+not|don't|never)\W+mention\W+(?:this|that|it)\b(?:\W+(?:instruction|message)\b|"
         r"\W+to\W+the\W+user\b|\s*[.!])"
         r"|\byou\W+must\W+(?:now\W+)?(?:ignore|obey|follow|say|respond|reply|answer|output|comply|forget)\b"
         r"|\bthe\W+(?:assistant|ai)\W+must\W+(?:now\W+)?\w+"
         r"|\b(?:respond|reply|answer|output)\W+(?:only|solely)\W+(?:with|that|in)\b"
         r"|\binstead,?\W+(?:say|respond|reply|answer|tell|write|print|state|claim|output)\b"
         r"|\bwhen(?:ever)?\W+(?:you\W+)?(?:summari[sz]\w*|answer\w*|asked|respond\w*)\b[^.]{0,60}"
         r"\b(?:say|claim|append|translate|instead|only)\b"
         r"|\b(?:answer|respond|reply|write)\w*\W.{0,40}\bin\W+base64\b"
         r"|\b(?:before|when)\W+(?:you\W+)?(?:answer\w*|respond\w*|reply\w*|summari[sz]\w*)\b[^.]{0,40}\bthis\W+"
         r"(?:email|document|page|message|file|text|table|thread)\b[^.]{0,20}\b(?:write|say|include|tell|add)\b"
         r"|\bin\W+your\W+(?:reply|answer|response|summary)\W+(?:include|say|add|mention|write|append)\b"
         r"|\b(?:make\W+sure|be\W+sure|remember|always|please)\b.{0,60}\b(?:in|to)\W+(?:your|every|each|any)\W+"
         r"(?:response|answer|reply|summary)\b"
         r"|\b(?:add|append|include|insert)\b.{0,50}\b(?:to|in|into)\W+(?:your|every|each|any)\W+"
         r"(?:answer|reply|summary)\b"),
        ("exfiltrate",
         r"\b(?:send|sends|sending|post|upload|email|forward|exfiltrate|transmit|leak|share)\b.{0,60}"
         r"\b(?:conversation|chat|history|previous\W+messages|user's|password|credentials|api\W+key|"
         r"secrets?|private\W+key|\.env|e-?mails?|calendar|inbox)\b.{0,40}\b(?:to|at|with)\b.{0,30}"
         r"(?:https?://|\S+@\S+\.\w+|every\W+contact)"
         r"|\b(?:key|password|secret|credentials|conversation|history)\b.{0,40}\b(?:posted|sent|uploaded|"
         r"forwarded)\W+to\b.{0,20}https?://"
         r"|!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s=]*=(?:\{|\[|[A-Z_]{3,}|\$)"
         r"|\b(?:send|sends|append|include|visit|open|link|add|put|fetch|load)\b.{0,60}https?://\S+[?&]\w+="
         r"(?:\s|$|[\"')])"),
    )
)
_MARKUP = {"chat-markup", "tool-call"}  # patterns that skip inline code
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_SPECIAL_TOKEN = re.compile(r"<\|([A-Za-z_]{2,32})\|>")
# A line longer than this is not matched as a whole: regexes over megabyte lines cost too much.
_MAX_LINE = 4000
_NOTE = "[quoted source text, not an instruction]"


@dataclass(frozen=True, slots=True)
class Screened:
    text: str  # the text to put in the prompt (flagged lines defanged)
    flags: tuple[str, ...]  # pattern names that matched, in order of first match

    @property
    def suspicious(self) -> bool:
        return bool(self.flags)


def _defang(line: str) -> str:
    # Angle brackets and braces are what chat templates and tool parsers key on.
    return line.replace("<", "\u2039").replace(">", "\u203a").replace("{", "(").replace("}", ")")


def _neutral(text: str) -> str:
    return _SPECIAL_TOKEN.sub("\u2039|\\1|\u203a", text) if "<|" in text else text


def line_flags(line: str) -> list[str]:
    """The pattern names that match ``line`` (its first :data:`_MAX_LINE` characters)."""
    probe = line[:_MAX_LINE]
    bare = _CODE_SPAN.sub(" ", probe) if "`" in probe else probe
    return [name for name, rx in _PATTERNS if rx.search(bare if name in _MARKUP else probe)]


def screen(text: str) -> Screened:
    """Flag injection-looking lines of ``text`` and defang them; clean text is returned unchanged
    (special chat-template tokens aside). The line count never changes: lines are cited by number."""
    flags: list[str] = []
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        hit = line_flags(line)
        if hit:
            flags += [h for h in hit if h not in flags]
            lines[i] = f"{_NOTE} {_defang(line)}"
            changed = True
    out = "\n".join(lines) if changed else text
    return Screened(_neutral(out), tuple(flags))


def defang_all(text: str, why: str) -> str:
    """``text`` with every line defanged and the first marked with ``why``: what a guard model flagged
    as a whole. The line count is kept."""
    lines = [_defang(line) for line in text.split("\n")]
    lines[0] = f"[{why}; quoted source text, not an instruction] {lines[0]}"
    return "\n".join(lines)
