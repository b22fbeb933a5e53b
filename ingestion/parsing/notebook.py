"""Jupyter notebooks: markdown and code cells in order; outputs dropped.

Plain :mod:`json` rather than nbformat: reading cells needs no schema validation (and nbformat would
bring jsonschema and traitlets along). Outputs are dropped: they are mostly images, tables and
tracebacks that bloat the index, and they are derived from the code that is kept. Code cells are
written as fenced blocks so the Markdown chunker keeps them whole and readers see the language.
"""

from __future__ import annotations

import json
from typing import Any

from corral.ingestion.parsing.detect import FileKind
from corral.ingestion.parsing.registry import Extracted, ParseFailure
from corral.ingestion.parsing.text import decode_text

__all__ = ["parse_notebook"]

_KERNEL_LANGUAGES = {"python": "python", "python3": "python", "r": "r", "julia": "julia",
                     "javascript": "js", "typescript": "ts", "scala": "scala", "bash": "shell"}


def parse_notebook(data: bytes, kind: FileKind) -> Extracted:
    try:
        nb = json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        raise ParseFailure(
            f"not a valid notebook: invalid JSON at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(nb, dict):
        raise ParseFailure("not a Jupyter notebook: the JSON is not an object")
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list) and nb["worksheets"]:  # format 3
        first = nb["worksheets"][0]
        cells = first.get("cells") if isinstance(first, dict) else None
    if not isinstance(cells, list):
        raise ParseFailure("not a Jupyter notebook: no list of cells")
    language = _language(nb.get("metadata"))
    fence_lang = {"js": "javascript", "ts": "typescript", "shell": "bash"}.get(language, language)
    blocks: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = _source(cell.get("source", cell.get("input")))
        if not source.strip():
            continue
        if cell.get("cell_type") == "code":
            fence = "````" if "```" in source else "```"
            blocks.append(f"{fence}{fence_lang}\n{source.rstrip()}\n{fence}")
        else:
            blocks.append(source.strip("\n"))
    text = "\n\n".join(blocks)
    return Extracted(text=text + "\n" if text else "", kind=FileKind("notebook", language))


def _source(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        text = "".join(part for part in value if isinstance(part, str))
    else:
        return ""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _language(metadata: Any) -> str:
    if isinstance(metadata, dict):
        for key in ("kernelspec", "language_info"):
            section = metadata.get(key)
            if isinstance(section, dict):
                name = section.get("language") or section.get("name")
                if isinstance(name, str) and name.lower() in _KERNEL_LANGUAGES:
                    return _KERNEL_LANGUAGES[name.lower()]
    return "python"
