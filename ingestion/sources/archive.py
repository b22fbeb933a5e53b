"""An uploaded file, or an uploaded zip archive extracted safely.

Every zip entry is checked before a byte of it is written: no absolute paths, no ``..``, no
symlinks, no encrypted entries, no duplicates, nothing over the per-file limit or with a
compression ratio that marks a zip bomb. Each refused entry becomes a :class:`SourceProblem` with
its reason; every other entry is extracted. Headers are not trusted: entries are decompressed as a
stream with a byte cap, so an entry that lies about its size is stopped at the cap. The archive as a
whole is limited in total uncompressed bytes and in file count.

The extraction lives in ``cache_dir/archives/<key>`` (from the archive's sha256, its name and the
limits) with a manifest of what was extracted and what was refused, so a worker re-opening a
document by path finds the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from corral.core.db import DocumentStatus, SourceKind
from corral.core.errors import InvalidInputError
from corral.ingestion.sources.base import SourceDescription, SourceDocument, SourceItem, SourceProblem
from corral.ingestion.sources.folder import batched, document_at
from corral.ingestion.sources.walk import hidden_file

__all__ = ["ArchiveLimits", "ArchiveSource", "extract_zip", "safe_file_name"]

_COPY_CHUNK = 64 * 1024
# Small files compress very well legitimately; the ratio test applies above this size.
_RATIO_FLOOR_BYTES = 1024 * 1024
_MANIFEST = "manifest.json"
# Entry names past this are refused: ``Document.path`` holds 2048 characters with the prefix.
_MAX_NAME = 1024


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_file_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 2 * 1024 * 1024 * 1024
    max_files: int = 100_000
    max_ratio: float = 200.0


class ArchiveSource:
    """An uploaded file (one document named ``name``) or ``.zip`` (documents ``<stem>/<entry>``)."""

    def __init__(
        self, upload: Path, *, cache_dir: Path, limits: ArchiveLimits, name: str | None = None
    ) -> None:
        if not upload.is_file():
            raise InvalidInputError(f"the uploaded file does not exist: {upload}")
        self.name = _display_name(name or upload.name)
        self._upload = upload
        self._is_zip = self.name.lower().endswith(".zip")
        self._problems: dict[str, SourceProblem] = {}
        self._documents: dict[str, int] = {}
        if not self._is_zip:
            self.root, self._prefix = upload, self.name
            return
        self._prefix = _display_name(self.name[: -len(".zip")] or "archive")
        size = upload.stat().st_size
        if size > limits.max_total_bytes:
            raise InvalidInputError(
                f"the archive is {size} bytes, over the {limits.max_total_bytes}-byte limit "
                "(CORRAL_ARCHIVE_MAX_TOTAL_BYTES)"
            )
        digest = _sha256_file(upload)
        base = cache_dir / "archives"
        # The manifest holds display paths and reflects the limits: both are part of the key.
        key = hashlib.sha256(f"{digest}\0{self._prefix}\0{limits!r}".encode()).hexdigest()[:32]
        dest = base / key
        if not (dest / _MANIFEST).exists():
            base.mkdir(parents=True, exist_ok=True)
            tmp = base / f"{dest.name}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                documents, problems = extract_zip(upload, tmp / "files", self._prefix, limits)
                manifest = {
                    "documents": documents,
                    "problems": [[p.path, p.reason, p.status.value] for p in problems],
                }
                (tmp / _MANIFEST).write_text(json.dumps(manifest))
                try:
                    tmp.rename(dest)
                except OSError:  # another process extracted the same archive first
                    shutil.rmtree(tmp, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        manifest = json.loads((dest / _MANIFEST).read_text())
        self.root = dest / "files"
        self._documents = {str(p): int(s) for p, s in manifest["documents"].items()}
        self._problems = {
            p: SourceProblem(p, r, DocumentStatus(s)) for p, r, s in manifest["problems"]
        }

    def describe(self) -> SourceDescription:
        return SourceDescription(SourceKind.UPLOAD, self.name, None, {"archive": self._is_zip})

    def iter_batches(self, batch_size: int) -> Iterator[list[SourceItem]]:
        return batched(self._items(), batch_size)

    def open_document(self, path: str) -> SourceItem:
        if path in self._problems:
            return self._problems[path]
        hidden = hidden_file(path.rsplit("/", 1)[-1]) if self._is_zip else None
        if hidden is not None and path in self._documents:
            return SourceProblem(path, hidden)
        if self._is_zip and path not in self._documents:
            return SourceProblem(path, "path is not inside this source", DocumentStatus.FAILED)
        return document_at(self.root, path, self._prefix)

    def _items(self) -> Iterator[SourceItem]:
        if not self._is_zip:
            yield document_at(self.root, self.name, self._prefix)
            return
        paths = sorted([*self._documents, *self._problems])
        for path in paths:
            hidden = hidden_file(path.rsplit("/", 1)[-1])
            if path in self._problems:
                yield self._problems[path]
            elif hidden is not None:
                yield SourceProblem(path, hidden)
            else:
                local = self.root.joinpath(*PurePosixPath(path).parts[1:])
                yield SourceDocument(path, local, self._documents[path])


def extract_zip(
    archive: Path, dest: Path, prefix: str, limits: ArchiveLimits
) -> tuple[dict[str, int], list[SourceProblem]]:
    """Extract the safe entries of ``archive`` under ``dest``.

    Returns the extracted documents (``prefix/entry`` → size) and a problem for every entry refused.
    Raises :class:`InvalidInputError` when the file is not a readable zip archive at all.
    """
    dest.mkdir(parents=True, exist_ok=True)
    documents: dict[str, int] = {}
    problems: list[SourceProblem] = []
    refused: set[str] = set()
    total = 0
    files = 0
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"not a readable zip archive: {exc}") from exc
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            files += 1
            if files > limits.max_files:
                problems.append(SourceProblem(
                    prefix, f"the archive has more than {limits.max_files} files; the rest were not "
                    "extracted (CORRAL_ARCHIVE_MAX_FILES)", DocumentStatus.FAILED,
                ))
                break
            safe = _safe_entry_name(info.filename)
            shown = f"{prefix}/{safe if safe else _printable(info.filename)}"

            def refuse(reason: str, shown: str = shown) -> None:
                refused.add(shown)
                problems.append(SourceProblem(shown, reason, DocumentStatus.FAILED))

            if safe is None:
                refuse(f"unsafe path in archive (absolute, '..', control characters or too long): "
                       f"{_printable(info.filename)!r}")
                continue
            if shown in documents or shown in refused:
                problems.append(SourceProblem(f"{shown}#{files}", "duplicate entry in archive",
                                              DocumentStatus.FAILED))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                refused.add(shown)
                problems.append(SourceProblem(shown, "symlink in archive is not extracted"))
                continue
            if info.flag_bits & 0x1:
                refuse("encrypted entry in archive is not extracted")
                continue
            if _bomb(info.file_size, info.compress_size, limits.max_ratio):
                refuse(f"compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 "
                       f"is over {limits.max_ratio:.0f}:1: refused as a zip bomb")
                continue
            if info.file_size > limits.max_file_bytes:
                refuse(f"entry is {info.file_size} bytes, over the {limits.max_file_bytes}-byte "
                       "limit (CORRAL_MAX_FILE_BYTES)")
                continue
            budget = min(limits.max_file_bytes, limits.max_total_bytes - total)
            if info.file_size > budget:
                refuse(f"the archive is over its {limits.max_total_bytes}-byte uncompressed limit "
                       "(CORRAL_ARCHIVE_MAX_TOTAL_BYTES); this entry was not extracted")
                continue
            target = dest.joinpath(*safe.split("/"))
            written, error = _copy_capped(zf, info, target, budget, limits.max_ratio)
            if error is not None:
                target.unlink(missing_ok=True)
                refuse(error)
                continue
            total += written
            documents[shown] = written
    return documents, problems


def _copy_capped(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, max_ratio: float
) -> tuple[int, str | None]:
    """Stream one entry to ``target``, stopping past ``budget`` bytes or a bomb-like ratio."""
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, target.open("xb") as out:
            while chunk := src.read(_COPY_CHUNK):
                written += len(chunk)
                if written > budget:
                    return written, (
                        f"entry decompresses past {budget} bytes (more than its header says, or over "
                        "the limits): refused"
                    )
                if _bomb(written, info.compress_size, max_ratio):
                    return written, "entry decompresses like a zip bomb: refused"
                out.write(chunk)
    except FileExistsError:
        return written, "duplicate entry in archive"
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        return written, f"corrupt or unsupported archive entry: {exc}"
    except OSError as exc:
        return written, f"cannot extract: {exc.strerror or exc}"
    return written, None


def _bomb(size: int, compressed: int, max_ratio: float) -> bool:
    return size > _RATIO_FLOOR_BYTES and size / max(compressed, 1) > max_ratio


def _safe_entry_name(name: str) -> str | None:
    """The entry's relative POSIX path, or ``None`` when it is absolute, climbs out, or is odd."""
    name = name.replace("\\", "/")
    if not name or len(name) > _MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _display_name(name: str) -> str:
    """An uploaded file's name as a single safe path component."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if ord(c) >= 32 and c != "\x7f").strip()
    if base in ("", ".", ".."):
        raise InvalidInputError(f"not a usable file name: {name[:200]!r}")
    return base[:255]


def safe_file_name(name: str) -> str:
    """An uploaded file's name as one safe path component: folders (``/``, ``\\``), drive letters'
    paths and control characters dropped; :class:`InvalidInputError` when nothing usable is left
    or it is over 255 bytes."""
    base = _display_name(name)
    if len(base.encode("utf-8", "surrogatepass")) > 255:
        raise InvalidInputError(f"the file name is over 255 bytes: {base[:100]!r}…")
    return base


def _printable(name: str) -> str:
    return "".join(c if ord(c) >= 32 and c != "\x7f" else "?" for c in name)[:300]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()
