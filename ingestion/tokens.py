"""Token counts in the chat model's own tokenizer (the router compares them with its window).

Loading a tokenizer out of a GGUF file takes seconds, so the first load saves it as an ordinary
tokenizer folder under the cache directory, keyed by the model file's identity.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from corral.core.config import get_settings
from corral.core.errors import ModelError

__all__ = ["TokenCounter", "get_token_counter", "load_tokenizer"]


class TokenCounter(Protocol):
    def count(self, texts: Sequence[str]) -> list[int]: ...


def _cache_key(folder: Path, gguf_file: str | None) -> str:
    target = folder / gguf_file if gguf_file else folder
    stat = target.stat()
    ident = f"{target.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def load_tokenizer(folder: Path, gguf_file: str | None, cache_dir: Path | None) -> Any:
    """A transformers tokenizer for the model in ``folder`` (or the GGUF file in it), offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer  # deferred: importing transformers takes seconds

    try:
        if gguf_file and cache_dir is not None:
            saved = cache_dir / "tokenizers" / _cache_key(folder, gguf_file)
            if (saved / "tokenizer_config.json").exists():
                return AutoTokenizer.from_pretrained(saved)
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
            # Save under a private name, then rename: concurrent workers never see half a folder.
            tmp = saved.with_name(f"{saved.name}.tmp{os.getpid()}")
            tok.save_pretrained(tmp)
            try:
                tmp.rename(saved)
            except OSError:  # another process won the race; its copy is identical
                shutil.rmtree(tmp, ignore_errors=True)
            return tok
        return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer from {folder / (gguf_file or '')}: {exc}") from exc


class _HFTokenCounter:
    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tok(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]


@lru_cache(maxsize=1)
def get_token_counter() -> TokenCounter:
    settings = get_settings()
    folder, gguf_file = settings.resolved_chat_model()
    return _HFTokenCounter(load_tokenizer(folder, gguf_file, settings.cache_dir))
