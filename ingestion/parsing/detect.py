"""What a file is, from its name and (when the name says nothing) its first bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

# Extension → language for source code. Languages match LangChain's splitter names where it has one.
CODE_LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "js",
    ".ts": "ts", ".tsx": "ts", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp",
    ".scala": "scala", ".swift": "swift", ".lua": "lua", ".pl": "perl", ".hs": "haskell",
    ".ex": "elixir", ".exs": "elixir", ".sol": "sol", ".proto": "proto", ".sh": "shell",
    ".bash": "shell", ".sql": "sql", ".r": "r", ".m": "objc", ".ps1": "powershell",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".ini": "ini",
    ".cfg": "ini", ".css": "css", ".scss": "css", ".vue": "js", ".svelte": "js",
}
MARKDOWN = frozenset({".md", ".markdown", ".mdown", ".mkd"})
TEXT = frozenset({".txt", ".text", ".rst", ".adoc", ".org", ".csv", ".tsv", ".log", ".tex"})
# Names without a telling extension that are text by convention.
TEXT_NAMES = frozenset({
    "readme", "license", "licence", "copying", "authors", "contributors", "changelog", "changes",
    "news", "notice", "makefile", "dockerfile", "gemfile", "rakefile", "procfile", "todo",
})
# Formats we recognise but do not parse yet: skipped with a reason rather than read as text.
KNOWN_BINARY = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".svgz",
    ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".epub",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".whl", ".jar",
    ".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".o", ".a", ".class", ".wasm", ".bin",
    ".mp3", ".mp4", ".wav", ".flac", ".ogg", ".avi", ".mov", ".mkv", ".ttf", ".otf", ".woff",
    ".woff2", ".sqlite", ".db", ".gguf", ".safetensors", ".pt", ".npy", ".npz", ".pkl",
})


@dataclass(frozen=True, slots=True)
class FileKind:
    kind: str  # "code" | "markdown" | "text" | "binary" | "unknown"
    language: str | None = None


def classify(path: PurePath) -> FileKind:
    """Kind and language of ``path`` from its name alone; ``unknown`` means "sniff the bytes"."""
    suffix = path.suffix.lower()
    if suffix in CODE_LANGUAGES:
        return FileKind("code", CODE_LANGUAGES[suffix])
    if suffix in MARKDOWN:
        return FileKind("markdown", "markdown")
    if suffix in TEXT:
        return FileKind("text")
    if suffix in KNOWN_BINARY:
        return FileKind("binary")
    if path.name.lower().split(".")[0] in TEXT_NAMES:
        return FileKind("text")
    return FileKind("unknown")


def looks_binary(head: bytes) -> bool:
    """True when the first bytes of a file are not text (a NUL byte, or mostly control bytes)."""
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return control / len(head) > 0.3
