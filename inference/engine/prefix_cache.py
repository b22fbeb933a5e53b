"""Prompt-prefix KV cache: in memory (LRU by bytes) and on disk (safetensors files, LRU by bytes).

Keys are a hash chain over fixed-size token blocks: ``h_i = sha256(fingerprint, h_{i-1}, tokens of block
i)``, so a block's key names the model, the weights variant and every token before it. A prompt reuses
the longest chain of blocks found; a new process with the same folder finds what earlier ones wrote.
A block file that is unreadable, truncated or disagrees with its key is logged, deleted and treated as
a miss: the cache may lose work, never correctness or the request.

Block KV layout: ``[L, 2, K, block, D]`` (layers, key/value, kv heads, positions, head dim).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["PrefixCache"]

log = logging.getLogger(__name__)
_FORMAT = "corral-kv-1"


class PrefixCache:
    """Thread-safe. ``lookup`` returns cached blocks for a prompt; ``store`` adds blocks after a prefill.

    Disk writes happen on a background thread so a request does not wait for them; ``flush`` waits.
    """

    def __init__(
        self,
        fingerprint: str,
        *,
        block_size: int = 64,
        memory_bytes: int = 1 << 30,
        disk_dir: Path | None = None,
        disk_bytes: int = 8 << 30,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be positive")
        self.fingerprint = fingerprint
        self.block_size = block_size
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self._mem: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._mem_used = 0
        self._lock = threading.Lock()
        self._dir = disk_dir / fingerprint[:32] if disk_dir is not None else None
        self._disk_used = 0
        self._queue: queue.Queue[tuple[str, list[int], torch.Tensor] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._disk_used = sum(f.stat().st_size for f in self._dir.glob("*.safetensors"))
            # Blocks queued for disk are written before the interpreter exits (the writer is a daemon).
            atexit.register(_flush_if_alive, weakref.ref(self))

    # -- keys ----------------------------------------------------------------------------------------
    def block_hashes(self, ids: Sequence[int]) -> list[str]:
        """The chain hash of every *full* block of ``ids``."""
        out: list[str] = []
        prev = self.fingerprint.encode()
        bs = self.block_size
        for i in range(len(ids) // bs):
            h = hashlib.sha256(prev)
            h.update(array("q", ids[i * bs : (i + 1) * bs]).tobytes())
            prev = h.digest()
            out.append(h.hexdigest())
        return out

    # -- read ----------------------------------------------------------------------------------------
    def lookup(self, ids: Sequence[int]) -> list[torch.Tensor]:
        """KV of the longest run of leading blocks of ``ids`` held in memory or on disk."""
        found: list[torch.Tensor] = []
        bs = self.block_size
        for i, key in enumerate(self.block_hashes(ids)):
            with self._lock:
                kv = self._mem.get(key)
                if kv is not None:
                    self._mem.move_to_end(key)
            if kv is None:
                kv = self._read(key, list(ids[i * bs : (i + 1) * bs]))
                if kv is None:
                    break
                self._remember(key, kv)
            found.append(kv)
        return found

    def cached_tokens(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` (whole blocks) the cache holds, in memory or on disk, without
        reading any block: a cheap probe for planning. A block whose file turns out unreadable is still
        counted here; ``lookup`` drops it and the request prefills it."""
        held = 0
        for key in self.block_hashes(ids):
            with self._lock:
                present = key in self._mem
            if not present and (self._dir is None or not self._path(key).exists()):
                break
            held += self.block_size
        return held

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{key}.safetensors"

    def _read(self, key: str, tokens: list[int]) -> torch.Tensor | None:
        if self._dir is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                kv: torch.Tensor = f.get_tensor("kv")
            if (
                meta.get("format") != _FORMAT
                or meta.get("fingerprint") != self.fingerprint
                or json.loads(meta.get("tokens", "null")) != tokens
                or kv.dim() != 5
                or kv.shape[3] != self.block_size
            ):
                raise ValueError("metadata or shape disagree with the key")
        except Exception as exc:  # a corrupt file must never fail the request
            log.warning("dropping unreadable prefix-cache block %s: %s", path.name, exc)
            self._unlink(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: last to be evicted
        return kv

    # -- write ---------------------------------------------------------------------------------------
    def store(self, ids: Sequence[int], blocks: Sequence[tuple[int, torch.Tensor]]) -> None:
        """Keep ``blocks`` (block index, KV ``[L, 2, K, block, D]``, owned by the cache from now on)."""
        keys = self.block_hashes(ids)
        bs = self.block_size
        for index, kv in blocks:
            key = keys[index]
            self._remember(key, kv)
            if self._dir is not None and not self._path(key).exists():
                self._queue.put((key, list(ids[index * bs : (index + 1) * bs]), kv))
                self._ensure_writer()

    def _remember(self, key: str, kv: torch.Tensor) -> None:
        size = kv.numel() * kv.element_size()
        if size > self.memory_bytes:
            return
        with self._lock:
            old = self._mem.pop(key, None)
            if old is not None:
                self._mem_used -= old.numel() * old.element_size()
            self._mem[key] = kv
            self._mem_used += size
            while self._mem_used > self.memory_bytes and self._mem:
                _, evicted = self._mem.popitem(last=False)
                self._mem_used -= evicted.numel() * evicted.element_size()

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                writer = threading.Thread(target=self._write_loop, name="prefix-cache-writer", daemon=True)
                self._writer = writer
                writer.start()

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._lock:  # idle: end, unless a block arrived meanwhile (then keep writing)
                    if self._queue.empty():
                        self._writer = None
                        return
                continue
            try:
                if item is not None:
                    self._write(*item)
            except Exception as exc:  # a full disk loses cache entries, not requests
                log.warning("could not persist a prefix-cache block: %s", exc)
            finally:
                self._queue.task_done()

    def _write(self, key: str, tokens: list[int], kv: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(key)
        if path.exists():
            return
        tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
        meta = {"format": _FORMAT, "fingerprint": self.fingerprint, "tokens": json.dumps(tokens)}
        save_file({"kv": kv.contiguous()}, str(tmp), metadata=meta)
        tmp.replace(path)  # atomic: readers see a whole file or none
        with self._lock:
            self._disk_used += path.stat().st_size
            over = self._disk_used > self.disk_bytes
        if over:
            self._evict_disk()

    def _evict_disk(self) -> None:
        assert self._dir is not None
        files = []
        for f in self._dir.glob("*.safetensors"):
            try:
                st = f.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, f))
        files.sort()
        total = sum(size for _, size, _ in files)
        for _, size, f in files:
            if total <= self.disk_bytes:
                break
            self._unlink(f)
            total -= size
        with self._lock:
            self._disk_used = total

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    def flush(self) -> None:
        """Wait until every block handed to ``store`` is on disk."""
        self._queue.join()

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
            self._mem_used = 0

    @property
    def keeps_blocks(self) -> bool:
        """False when both tiers are off (no memory budget, no folder): callers can skip copying KV."""
        return self.memory_bytes > 0 or self._dir is not None

    @property
    def memory_used(self) -> int:
        return self._mem_used

    @property
    def disk_used(self) -> int:
        return self._disk_used


def _flush_if_alive(ref: weakref.ref[PrefixCache]) -> None:
    cache = ref()
    if cache is not None:
        cache.flush()
