"""Finding credentials in a document's text with detect-secrets' detectors, run in-process.

Only the detectors that recognise a credential by its own shape are used (AWS, GitHub, GitLab, Slack,
Stripe, OpenAI, PyPI, npm, SendGrid, Twilio, Discord, Telegram, Mailchimp, Square, Azure, IBM,
Artifactory, Cloudant, SoftLayer keys; JWTs; a password inside a URL; private key blocks) plus the
keyword detector (``password = "..."``, ``api_key: ...``) with detect-secrets' own false-positive
filters. Left out on purpose: the high-entropy string detectors, which flag hashes, checksums and
base64 test data all over ordinary code, and the public-IP detector (an address is not a credential).

The detectors' regexes are applied here, with their match positions, rather than through
``scan_line``: that keeps detect-secrets' process-wide settings (and its network verification of
found keys) out of the ingest path, and tells where each credential is, not only its value.

Cost is bounded on hostile input: a detector runs on a document's lines only when its regexes match
somewhere in the whole text, and a line longer than :data:`MAX_LINE_CHARS` is scanned in overlapping
windows rather than whole.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_indirect_reference,
    is_likely_id_string,
    is_not_alphanumeric_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import (
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from detect_secrets.util.filetype import determine_file_type

__all__ = ["MAX_LINE_CHARS", "PRIVATE_KEY", "Finding", "find_secrets"]

# Lines longer than this are scanned in windows of this size overlapping by _OVERLAP characters: a
# credential shorter than the overlap is always seen whole in some window.
MAX_LINE_CHARS = 4096
_OVERLAP = 512
PRIVATE_KEY = "private key"

# What each detector finds, as a marker names it, and the literals one of which every match holds
# (lowercase: looked for in the lowercased text; with a capital: as they are). A line holding none
# is not tried: most detectors' regexes cost far more than looking for a few literals. Without
# literals, the lines tried are those where the detector's own regexes match in the whole text
# (regexes that start with a character class, which the regex engine scans for quickly).
_KINDS: dict[type[RegexBasedDetector], tuple[str, tuple[str, ...]]] = {
    AWSKeyDetector: ("AWS access key", ("a3t", "abia", "acca", "akia", "asia", "aws")),
    ArtifactoryDetector: ("Artifactory token", ("AKC", "AP")),
    AzureStorageKeyDetector: ("Azure storage key", ("AccountKey=",)),
    BasicAuthDetector: ("password in URL", ("://",)),
    CloudantDetector: ("Cloudant password", ("cl",)),
    DiscordBotTokenDetector: ("Discord token", ()),
    GitHubTokenDetector: ("GitHub token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    GitLabTokenDetector: ("GitLab token", ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "GR1348941",
                                           "glcbt-", "glimt-", "glptt-", "glagent-", "gloas-")),
    IbmCloudIamDetector: ("IBM Cloud key", ("key", "pwd", "pass", "token")),
    IbmCosHmacDetector: ("IBM COS key", ("secret",)),
    JwtTokenDetector: ("JSON web token", ("eyJ",)),
    MailchimpDetector: ("Mailchimp key", ("-us",)),
    NpmDetector: ("npm token", ("_authToken",)),
    OpenAIDetector: ("OpenAI key", ("T3BlbkFJ",)),
    PypiTokenDetector: ("PyPI token", ("pypi-",)),
    SendGridDetector: ("SendGrid key", ("SG.",)),
    SlackDetector: ("Slack token", ("xox", "hooks.slack.com")),
    SoftlayerDetector: ("SoftLayer key", ("sl", "softlayer")),
    SquareOAuthDetector: ("Square OAuth secret", ("sq0csp-",)),
    StripeDetector: ("Stripe key", ("k_live_",)),
    TelegramBotTokenDetector: ("Telegram token", ()),
    TwilioKeyDetector: ("Twilio key", ()),
}
_KEYWORD_KIND = "secret"
_MAX_KEYWORD_HITS = 64
_NEWLINE = re.compile("\n")
_JWT_TAIL = re.compile(r"[A-Za-z0-9\-_.+/=]*")

# A private key block: its BEGIN line, then the body up to the END line (looked for within
# _MAX_KEY_CHARS), or, with no END line, the lines that look like key material.
_KEY_BEGIN = re.compile(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d:[^\n]*")
_KEY_END = re.compile(r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----|Private-MAC:[^\n]*")
_KEY_LINE = re.compile(r"[ \t]*[\"']?[A-Za-z0-9+/=:,\- \t]{0,200}(?:\\n)?[\"']?,?[ \t]*")
_KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/]{16}")
_MAX_KEY_CHARS = 64_000
_MAX_KEY_LINES = 400


@dataclass(frozen=True, slots=True)
class Finding:
    """A credential at ``text[start:end]``. Only a private key block spans several lines."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    patterns: tuple[re.Pattern[str], ...]
    lower: tuple[str, ...]  # literals looked for in the lowercased line
    exact: tuple[str, ...]  # literals looked for as they are
    jwt: bool = False
    whole: bool = False  # the secret is the whole match, not the regex's first group


# Detectors whose regexes group only the token's prefix (``(ghp|gho|…)_…``).
_WHOLE_MATCH = (GitHubTokenDetector, GitLabTokenDetector)


def _detectors() -> tuple[_Detector, ...]:
    out = []
    for cls, (kind, needles) in _KINDS.items():
        patterns: tuple[re.Pattern[str], ...] = tuple(cls.denylist)  # type: ignore[arg-type]
        lower = tuple(n for n in needles if n == n.lower())
        exact = tuple(n for n in needles if n != n.lower())
        out.append(_Detector(kind, patterns, lower, exact, jwt=cls is JwtTokenDetector,
                             whole=cls in _WHOLE_MATCH))
    return tuple(out)


_DETECTORS = _detectors()
_KEYWORD = KeywordDetector()
# Every word of the keyword detector's list (api_key, password, secret…) holds one of these.
_KEYWORD_NEEDLES = ("key", "pass", "pwd", "secret", "contrase")


def find_secrets(text: str, path: str = "") -> list[Finding]:
    """The credentials in ``text`` in order, none overlapping; ``path`` (its name) picks the keyword
    detector's rules for the file type (quotes required in code, not in config files)."""
    found = list(_private_keys(text))
    keyword_rules = REGEX_BY_FILETYPE.get(determine_file_type(path or "x.txt"),
                                          QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
    # Lowercasing keeps the newlines (a few characters grow, so offsets may not match; line numbers do).
    lowered = text.lower()
    newlines = [m.start() for m in _NEWLINE.finditer(text)]
    lowered_newlines = newlines if len(lowered) == len(text) else [
        m.start() for m in _NEWLINE.finditer(lowered)]
    todo: dict[int, list[_Detector | None]] = {}  # line number -> detectors to run (None: keywords)
    for d in _DETECTORS:
        lines: set[int] = set()
        for needle in d.lower:
            lines |= _lines_holding(lowered, needle, lowered_newlines)
        for needle in d.exact:
            lines |= _lines_holding(text, needle, newlines)
        for pattern in d.patterns if not (d.lower or d.exact) else ():
            lines |= _lines_matching(text, pattern, newlines)
        for n in lines:
            todo.setdefault(n, []).append(d)
    for needle in _KEYWORD_NEEDLES:
        for n in _lines_holding(lowered, needle, lowered_newlines):
            if None not in todo.setdefault(n, []):
                todo[n].append(None)
    for n in sorted(todo):
        start = newlines[n - 1] + 1 if n else 0
        end = newlines[n] if n < len(newlines) else len(text)
        for offset, line in _windows(text, start, end):
            for todo_d in todo[n]:
                if todo_d is None:
                    found += (Finding(_KEYWORD_KIND, offset + a, offset + b)
                              for a, b in _keyword_hits(line, keyword_rules))
                else:
                    found += (Finding(todo_d.kind, offset + a, offset + b)
                              for a, b in _regex_hits(todo_d, line))
    return _merged(found)


def _lines_holding(text: str, needle: str, newlines: list[int]) -> set[int]:
    """The numbers (0-based) of the lines of ``text`` holding ``needle``."""
    out: set[int] = set()
    i = text.find(needle)
    while i >= 0:
        n = bisect.bisect_left(newlines, i)
        out.add(n)
        if n >= len(newlines):
            break
        i = text.find(needle, newlines[n] + 1)
    return out


def _lines_matching(text: str, pattern: re.Pattern[str], newlines: list[int]) -> set[int]:
    """The numbers of the lines where ``pattern`` starts a match (each line looked at once)."""
    out: set[int] = set()
    m = pattern.search(text)
    while m is not None:
        n = bisect.bisect_left(newlines, m.start())
        out.add(n)
        if n >= len(newlines):
            break
        m = pattern.search(text, newlines[n] + 1)
    return out


def _windows(text: str, start: int, end: int) -> Iterator[tuple[int, str]]:
    """The line ``text[start:end]`` with its offset; a long one as overlapping windows of it."""
    if end - start <= MAX_LINE_CHARS:
        yield start, text[start:end]
        return
    step = MAX_LINE_CHARS - _OVERLAP
    for a in range(start, end, step):
        yield a, text[a : min(a + MAX_LINE_CHARS, end)]
        if a + MAX_LINE_CHARS >= end:
            break


def _regex_hits(d: _Detector, line: str) -> Iterator[tuple[int, int]]:
    """Where the detector's regexes match in ``line``: the first group (the secret inside its
    context: ``aws_secret = "…"``, ``://user:…@``) or the whole match."""
    for pattern in d.patterns:
        for m in pattern.finditer(line):
            grouped = pattern.groups and not d.whole and m.group(1)
            for a, b in [m.span(1) if grouped else m.span()]:
                if d.jwt:
                    if not JwtTokenDetector.is_formally_valid(line[a:b]):
                        continue
                    # detect-secrets' JWT regex ends lazily, leaving out the signature: take it too.
                    b = _JWT_TAIL.match(line, b).end()  # type: ignore[union-attr]  # always matches
                if b > a:
                    yield a, b


def _keyword_hits(line: str, rules: dict[re.Pattern[str], int]) -> Iterator[tuple[int, int]]:
    """The keyword detector's finds (``password = "…"``), less what detect-secrets' filters judge a
    false positive: templates, ``$VARIABLES``, indirect references, ids, UUIDs, sequences."""
    if is_indirect_reference(line):
        return
    for regex, group in rules.items():
        pos = 0
        for _ in range(_MAX_KEYWORD_HITS):  # every one on the line (one-line JSON holds several)
            m = regex.search(line, pos)
            if m is None:
                break
            pos = max(m.end(), pos + 1)
            secret = m.group(group)
            if secret and not _keyword_false_positive(secret, line):
                yield m.span(group)


def _keyword_false_positive(secret: str, line: str) -> bool:
    return (is_templated_secret(secret) or is_prefixed_with_dollar_sign(secret)
            or is_not_alphanumeric_string(secret) or is_potential_uuid(secret)
            or is_sequential_string(secret) or is_likely_id_string(secret, line, _KEYWORD))


def _private_keys(text: str) -> Iterator[Finding]:
    """Private key blocks: from the end of the BEGIN line to the start of the END line."""
    ends = [m.start() for m in _KEY_END.finditer(text)] if "PRIVATE KEY" in text or "PuTTY" in text \
        else []
    pos = 0
    while (begin := _KEY_BEGIN.search(text, pos)) is not None:
        start = begin.end()
        i = bisect.bisect_left(ends, start)
        end = ends[i] if i < len(ends) and ends[i] - start <= _MAX_KEY_CHARS else -1
        if end < 0 or text.count("\n", start, end) > _MAX_KEY_LINES:
            end = _key_body_end(text, start)  # no END line (or not this key's): what looks like one
        if _KEY_MATERIAL.search(text, start, end):
            yield Finding(PRIVATE_KEY, start, end)
        pos = max(end, start)


def _key_body_end(text: str, start: int) -> int:
    """Without an END line: the end of the lines after the BEGIN line that look like key material."""
    end = text.find("\n", start)
    if end < 0:
        return len(text)
    for _ in range(_MAX_KEY_LINES):
        nxt = text.find("\n", end + 1)
        line_end = len(text) if nxt < 0 else nxt
        line = text[end + 1 : line_end]
        if not line.strip() or _KEY_LINE.fullmatch(line) is None:
            break
        end = line_end
        if nxt < 0:
            break
    return end


def _merged(found: list[Finding]) -> list[Finding]:
    """Findings in order, overlapping ones joined (the first one's kind wins)."""
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end)):
        if out and f.start < out[-1].end:
            last = out[-1]
            if f.end > last.end:
                out[-1] = Finding(last.kind, last.start, f.end)
            continue
        out.append(f)
    return out
