"""What a file is, from its name and (when the name says nothing) its first bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

# Extension → language for source code. Languages match LangChain's splitter names where it has one
# (they are stored in ``Document.language``); the tree-sitter chunker maps them to its grammars.
CODE_LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python", ".js": "js", ".mjs": "js", ".cjs": "js",
    ".jsx": "js", ".ts": "ts", ".mts": "ts", ".cts": "ts", ".tsx": "tsx", ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin", ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".hxx": "cpp", ".cs": "csharp", ".scala": "scala", ".sc": "scala", ".swift": "swift",
    ".lua": "lua", ".pl": "perl", ".pm": "perl", ".hs": "haskell", ".ex": "elixir",
    ".exs": "elixir", ".sol": "sol", ".proto": "proto", ".sh": "shell", ".bash": "shell",
    ".zsh": "shell", ".sql": "sql", ".r": "r", ".m": "objc", ".ps1": "powershell",
    ".dart": "dart", ".jl": "julia", ".zig": "zig", ".ml": "ocaml", ".mli": "ocaml",
    ".erl": "erlang", ".clj": "clojure", ".groovy": "groovy", ".tf": "hcl",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".ini": "ini",
    ".cfg": "ini", ".css": "css", ".scss": "css", ".vue": "js", ".svelte": "js", ".xml": "xml",
}
MARKDOWN = frozenset({".md", ".markdown", ".mdown", ".mkd"})
RST = frozenset({".rst", ".rest"})
HTML = frozenset({".html", ".htm", ".xhtml"})
TEXT = frozenset({".txt", ".text", ".adoc", ".org", ".csv", ".tsv", ".log", ".tex"})
# Formats with a parser of their own (binary containers or structured text).
DOCUMENT_FORMATS: dict[str, str] = {".pdf": "pdf", ".docx": "docx", ".ipynb": "notebook"}
# Images, read by OCR (the format is then told by the bytes, not the name).
IMAGES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".tif", ".tiff", ".gif", ".bmp"})
# Names without a telling extension that are text by convention.
TEXT_NAMES = frozenset({
    "readme", "license", "licence", "copying", "authors", "contributors", "changelog", "changes",
    "news", "notice", "makefile", "dockerfile", "gemfile", "rakefile", "procfile", "todo",
})
# Formats we recognise but do not parse: skipped with a reason rather than read as text.
KNOWN_BINARY = frozenset({
    ".ico", ".svgz",
    ".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".epub",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".whl", ".jar",
    ".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".o", ".a", ".class", ".wasm", ".bin",
    ".mp3", ".mp4", ".wav", ".flac", ".ogg", ".avi", ".mov", ".mkv", ".ttf", ".otf", ".woff",
    ".woff2", ".sqlite", ".db", ".gguf", ".safetensors", ".pt", ".npy", ".npz", ".pkl",
})


@dataclass(frozen=True, slots=True)
class FileKind:
    """``kind`` is one of: code, markdown, rst, text, html, pdf, docx, notebook, image, binary,
    unknown.

    ``language`` is the programming language for code (and for a notebook's code cells)."""

    kind: str
    language: str | None = None


def classify(path: PurePath) -> FileKind:
    """Kind and language of ``path`` from its name alone; ``unknown`` means "sniff the bytes"."""
    suffix = path.suffix.lower()
    if suffix in CODE_LANGUAGES:
        return FileKind("code", CODE_LANGUAGES[suffix])
    if suffix in MARKDOWN:
        return FileKind("markdown", "markdown")
    if suffix in RST:
        return FileKind("rst")
    if suffix in HTML:
        return FileKind("html")
    if suffix in DOCUMENT_FORMATS:
        return FileKind(DOCUMENT_FORMATS[suffix])
    if suffix in TEXT:
        return FileKind("text")
    if suffix in IMAGES:
        return FileKind("image")
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
