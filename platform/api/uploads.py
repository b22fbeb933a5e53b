"""Receiving uploaded files: a ``multipart/form-data`` body streamed to disk, never whole in memory.

The body is fed chunk by chunk, as it arrives, to python-multipart's push parser; each file part
is written straight into a staging folder ``<data dir>/uploads/<id>.part/files/``. Limits are
enforced while it streams: the total file bytes (``CORRAL_UPLOAD_MAX_BYTES``, a 413) and the number
of files (``CORRAL_ARCHIVE_MAX_FILES``). File names are reduced to one safe path component (no
folders, no ``..``, no absolute or drive paths, no control characters); two files with the same
name are refused. A ``.zip`` must open as an archive; what is inside it is checked entry by entry
by the job (:mod:`corral.ingestion.sources.archive`: zip bombs, traversal, symlinks and the
total-size and file-count limits are reported per entry in the job's report).

Only a complete, accepted upload is renamed to ``<data dir>/uploads/<id>/``; any refusal or error
removes the staging folder, so nothing is left half-written. Workers read the staged files from
the data dir: in server mode they must mount the same data dir volume as the API.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from corral.core.errors import InvalidInputError, PayloadTooLargeError
from corral.ingestion.sources import UploadSpec
from corral.ingestion.sources.archive import safe_file_name
from corral.ingestion.sources.upload import upload_prefix

__all__ = ["ABANDONED_AFTER_S", "StagedUpload", "UploadLimits", "receive_upload",
           "sweep_abandoned_uploads"]

# A staging folder (``<id>.part``) untouched this long belongs to an API process that died mid-upload
# (SIGKILL runs no cleanup). Another process's upload in progress writes to its folder all along.
ABANDONED_AFTER_S = 3600.0

_MAX_FIELD_BYTES = 64 * 1024  # a form field that is not a file (ignored) may not be larger
_MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int  # all files together
    max_files: int


@dataclass(frozen=True, slots=True)
class StagedUpload:
    folder: Path  # <uploads>/<id>: removed with discard()
    names: tuple[str, ...]
    digest: str  # SHA-256 over the files' names and bytes: tells a retried upload from another one

    @property
    def spec(self) -> UploadSpec:
        files = self.folder / "files"
        if len(self.names) == 1:
            return UploadSpec(files / self.names[0], self.names[0])
        return UploadSpec(files, f"{len(self.names)} files")

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Receiver:
    """The parser's callbacks: one part at a time, its headers, then its bytes to a file."""

    def __init__(self, files: Path, limits: UploadLimits) -> None:
        self.files, self.limits = files, limits
        self.names: list[str] = []
        self.total = 0
        self.parts = 0
        self.ended = False
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._out: BinaryIO | None = None
        self._ignored = 0
        self.digest = hashlib.sha256()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._part_end, "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise InvalidInputError(f"the upload has more than {_MAX_PARTS} parts")
        self._headers, self._field, self._value, self._ignored = {}, b"", b"", 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        raw = options.get(b"filename")
        if disposition != b"form-data" or raw is None:
            return  # a plain form field: read past it
        name = safe_file_name(raw.decode("utf-8", "replace"))
        if len(self.names) >= self.limits.max_files:
            raise PayloadTooLargeError(f"the upload has more than {self.limits.max_files} files "
                                       "(CORRAL_ARCHIVE_MAX_FILES)")
        if name in self.names or upload_prefix(name) in {upload_prefix(n) for n in self.names}:
            raise InvalidInputError(f"two uploaded files are named {name[:200]!r} (or give documents "
                                    "the same names, like a.zip and a.ZIP): rename one")
        self.names.append(name)
        self.digest.update(b"\0file\0" + name.encode())
        self._out = (self.files / name).open("xb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._out is None:
            self._ignored += size
            if self._ignored > _MAX_FIELD_BYTES:
                raise InvalidInputError(f"a form field that is not a file is over {_MAX_FIELD_BYTES} "
                                        "bytes; send files with a filename")
            return
        self.total += size
        if self.total > self.limits.max_bytes:
            raise PayloadTooLargeError(f"the uploaded files pass the {self.limits.max_bytes:,}-byte "
                                       "limit (CORRAL_UPLOAD_MAX_BYTES)")
        self._out.write(data[start:end])
        self.digest.update(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInputError("send the files as multipart/form-data (one or more file fields)")
    if len(boundary) > 200:
        raise InvalidInputError("the multipart boundary is over 200 bytes")
    return boundary


async def receive_upload(request: Request, root: Path, limits: UploadLimits) -> StagedUpload:
    """Stream the request's files into a new folder under ``root``; the staged upload.

    Raises :class:`InvalidInputError` for a body that is not well-formed multipart, holds no file
    or a ``.zip`` that is not an archive, and :class:`PayloadTooLargeError` past the limits; the
    staging folder is removed before any error leaves.
    """
    boundary = _boundary(request)
    upload_id = uuid.uuid4().hex
    part = root / f"{upload_id}.part"
    files = part / "files"
    files.mkdir(parents=True)
    receiver = _Receiver(files, limits)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        try:
            async for chunk in request.stream():
                if chunk:
                    parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}") from None
        finally:
            receiver.close()
        if not receiver.ended:
            raise InvalidInputError("the multipart body ended before its closing boundary")
        if not receiver.names:
            raise InvalidInputError("the upload holds no file: send one or more multipart fields "
                                    "with a filename")
        for name in receiver.names:
            if name.lower().endswith(".zip"):
                _check_zip(files / name)
        final = root / upload_id
        part.rename(final)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return StagedUpload(final, tuple(receiver.names), receiver.digest.hexdigest())


def _check_zip(path: Path) -> None:
    """Refuse a ``.zip`` that does not open as an archive (its central directory is read; entries
    are checked by the job)."""
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{path.name[:200]!r} is not a readable zip archive: {exc}") from None


def sweep_abandoned_uploads(root: Path, older_than_s: float = ABANDONED_AFTER_S) -> list[str]:
    """Remove the staging folders under ``root`` no upload has written to for ``older_than_s``
    seconds (left by an API process killed mid-upload); returns their names. Finished uploads
    (renamed, queued as jobs) are never touched."""
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for part in root.glob("*.part"):
        newest = max((p.stat().st_mtime for p in part.rglob("*")), default=part.stat().st_mtime)
        if max(newest, part.stat().st_mtime) < cutoff:
            shutil.rmtree(part, ignore_errors=True)
            removed.append(part.name)
    if removed:
        logging.getLogger(__name__).warning("removed %d abandoned upload(s): %s", len(removed), removed)
    return removed
