"""Engines and sessions, created lazily from settings and cached per database URL."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from corral.core.config import get_settings
from corral.core.errors import ServiceUnavailableError

__all__ = ["SQLITE_NFKC", "dispose_engines", "get_engine", "get_sessionmaker", "register_sqlite_functions",
           "session_scope"]

# The SQL function SQLite's keyword index folds chunk text with (its triggers call it; see
# corral.core.index.keyword): Unicode NFKC, as the keyword query is folded.
SQLITE_NFKC = "corral_nfkc"


def _nfkc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFKC", text)


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Give a SQLite connection the functions the schema's triggers call (every connection that may
    write ``chunk`` rows needs them: the engines here, and the migration that creates the triggers)."""
    dbapi_connection.create_function(SQLITE_NFKC, 1, _nfkc, deterministic=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    register_sqlite_functions(dbapi_connection)
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while an in-process job writes; foreign keys make cascades real.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_SESSIONMAKERS: dict[str, sessionmaker[Session]] = {}
_LOCK = threading.Lock()


def _engine_for(url: str) -> Engine:
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                # One embedded process runs many runs, jobs and event streams at once, and a run holds a
                # connection while it plans (embedding the question, searching): SQLite connections are
                # cheap, so the pool is not what makes them wait.
                engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                       pool_size=20, max_overflow=80)
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (before a fork, or when a test drops its database)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _SESSIONMAKERS.clear()


def _resolve(url: str | None) -> str:
    if url is not None:
        return url
    settings = get_settings()
    url = settings.sqlalchemy_url
    if url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return url


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the configured database), creating its folder for SQLite."""
    return _engine_for(_resolve(url))


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    url = _resolve(url)
    maker = _SESSIONMAKERS.get(url)
    if maker is None:
        maker = _SESSIONMAKERS[url] = sessionmaker(bind=_engine_for(url), expire_on_commit=False)
    return maker


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error; connection failures are translated."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise ServiceUnavailableError(f"database unavailable: {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
