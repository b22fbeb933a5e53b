"""The export format: JSON Lines, one record a line, gzip-compressed when the file name ends in
``.gz``. Rows travel as their columns by name, without database ids (an import gets new ones).

::

    {"type": "header", "format": "corral-export", "version": 1, "schema": "0004", "exported_at": …,
     "workspace": {"name": …, "monthly_token_budget": …}}
    {"type": "corpus", "name": …, "sources": [{source columns}, …]}
    {"type": "document", "corpus": …, "source": <index in its corpus's sources | null>,
     …document columns…, "chunks": [{chunk columns, text included}, …],
     "images": [{image columns, data as base64}, …]}
    {"type": "run", "corpus": …, …run columns…, "events": [{seq, kind, data, created_at}, …],
     "feedback": [{rating, comment, created_at}, …]}
    {"type": "end", "counts": {"corpora": n, "documents": n, "chunks": n, "runs": n, "feedback": n}}

What is not exported, and why: vectors (rebuilt on import from the chunks' texts, deduplicated by
content hash); API keys (only their hashes are stored: issue new ones); webhooks (their signing
secrets); jobs (history of work done, not data). The ``end`` record makes a truncated file an error.
"""

from __future__ import annotations

import base64
import binascii
import enum
import gzip
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.types import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
)

from corral.core.errors import InvalidInputError

__all__ = ["FORMAT", "VERSION", "decode_row", "encode_row", "open_text"]

FORMAT = "corral-export"
VERSION = 1


def open_text(path: Path, mode: str, gzipped: bool | None = None) -> IO[str]:
    """``path`` opened as UTF-8 text for ``"r"`` or ``"w"``, through gzip when ``gzipped`` (by
    default: when its name ends in ``.gz``)."""
    if path.suffix == ".gz" if gzipped is None else gzipped:
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):  # a stored image: JSON carries it as base64
        return base64.b64encode(value).decode("ascii")
    return value


def encode_row(row: object, skip: frozenset[str]) -> dict[str, Any]:
    """The row's columns by attribute name, but ``skip`` (ids, foreign keys), JSON-ready."""
    mapper = sa_inspect(type(row))
    return {attr.key: _encode(getattr(row, attr.key)) for attr in mapper.column_attrs
            if attr.key not in skip}


def _decode(model: type, name: str, column: Any, value: Any, where: str) -> Any:
    if value is None:
        if not column.nullable and column.default is None and column.server_default is None:
            raise InvalidInputError(f"{where}: {name} may not be null")
        return None
    kind = column.type
    enum_class = getattr(kind, "enum_class", None)
    try:
        if enum_class is not None:
            return enum_class(value)
        if isinstance(kind, DateTime):
            if not isinstance(value, str):
                raise TypeError
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if isinstance(kind, LargeBinary):
            if not isinstance(value, str):
                raise TypeError
            return base64.b64decode(value, validate=True)
    except (TypeError, ValueError, binascii.Error):
        raise InvalidInputError(f"{where}: {name} has an invalid value {str(value)[:60]!r}") from None
    expected: tuple[type, ...] | None = None
    if isinstance(kind, Boolean):
        expected = (bool,)
    elif isinstance(kind, (Integer, BigInteger)):
        expected = (int,)
    elif isinstance(kind, Float):
        expected = (int, float)
    elif isinstance(kind, (String, Text)):
        expected = (str,)
    elif isinstance(kind, JSON):
        expected = (dict, list)
    if expected is not None and (not isinstance(value, expected)
                                 or (bool not in expected and isinstance(value, bool))):
        raise InvalidInputError(f"{where}: {name} must be {expected[0].__name__}, not "
                                f"{type(value).__name__}")
    length = getattr(kind, "length", None)
    if isinstance(value, str) and length is not None and len(value) > length:
        raise InvalidInputError(f"{where}: {name} is longer than {length} characters")
    return value


def decode_row(model: type, data: dict[str, Any], skip: frozenset[str], where: str) -> dict[str, Any]:
    """Constructor arguments of ``model`` from an exported row, each checked against its column:
    an unknown field (an export from a newer Corral), a wrong type or a missing required value is
    an :class:`InvalidInputError` naming ``where`` and the field."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected an object")
    mapper: Any = sa_inspect(model)
    columns: dict[str, Any] = {attr.key: attr.columns[0] for attr in mapper.column_attrs
                               if attr.key not in skip}
    unknown = sorted(set(data) - set(columns))
    if unknown:
        raise InvalidInputError(f"{where}: unknown fields {unknown[:5]} (an export from a newer "
                                "Corral? upgrade this one first)")
    values = {name: _decode(model, name, columns[name], value, where) for name, value in data.items()}
    for name, column in columns.items():
        if (name not in values and not column.nullable and column.default is None
                and column.server_default is None and not column.primary_key):
            raise InvalidInputError(f"{where}: {name} is missing")
    return values
