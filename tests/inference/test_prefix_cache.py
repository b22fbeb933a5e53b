"""The prefix cache: a repeated prefix is not prefilled again, in this process or a new one; answers do
not change; bounds hold; broken or foreign files cost a miss and a warning, never a failed request."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from corral.inference.engine import Engine, EngineOptions, engine_from_hf
from corral.inference.engine.loading import load_hf_model
from corral.inference.engine.prefix_cache import PrefixCache
from corral.inference.generation import SamplingParams

BLOCK = 16
PARAMS = SamplingParams(max_tokens=8)


@pytest.fixture(scope="module")
def loaded(tiny_chat_model: Path) -> tuple[Any, Any]:
    return load_hf_model(tiny_chat_model)


def _engine(loaded: tuple[Any, Any], model: Path, cache_dir: Path | None, **kw: Any) -> Engine:
    tok, hf = loaded
    options = EngineOptions(weights="fp32", cache_dir=cache_dir, block_size=BLOCK, **kw)
    return engine_from_hf(tok, hf, model_path=model, options=options)


def _corpus(n: int = 100) -> list[int]:
    torch.manual_seed(5)
    return [int(t) for t in torch.randint(10, 40000, (n,))]


def test_second_question_prefills_only_itself(
    loaded: tuple[Any, Any], tiny_chat_model: Path, tmp_path: Path
) -> None:
    engine = _engine(loaded, tiny_chat_model, tmp_path)
    corpus = _corpus()
    first = engine.generate([*corpus, 1, 2, 3], PARAMS)
    assert first.cached_tokens == 0 and first.extra["prefilled_tokens"] == 103
    second = engine.generate([*corpus, 7, 8], PARAMS)
    assert second.cached_tokens == 96  # six whole 16-token blocks of the shared corpus
    assert second.extra["prefilled_tokens"] == 102 - 96
    uncached = _engine(loaded, tiny_chat_model, None, memory_cache_bytes=0)
    assert second.token_ids == uncached.generate([*corpus, 7, 8], PARAMS).token_ids


def test_fully_cached_prompt_still_computes_its_last_token(
    loaded: tuple[Any, Any], tiny_chat_model: Path
) -> None:
    engine = _engine(loaded, tiny_chat_model, None)
    prompt = _corpus(64)  # exactly four blocks
    first = engine.generate(prompt, PARAMS)
    again = engine.generate(prompt, PARAMS)
    assert again.cached_tokens == 63 and again.extra["prefilled_tokens"] == 1
    assert again.token_ids == first.token_ids


def test_warm_then_ask(loaded: tuple[Any, Any], tiny_chat_model: Path) -> None:
    engine = _engine(loaded, tiny_chat_model, None)
    corpus = _corpus()
    assert engine.warm(corpus) == 100
    assert engine.generate([*corpus, 9], PARAMS).cached_tokens == 96


def test_a_new_process_reuses_the_disk_cache(
    loaded: tuple[Any, Any], tiny_chat_model: Path, tmp_path: Path
) -> None:
    engine = _engine(loaded, tiny_chat_model, tmp_path)
    corpus = _corpus()
    here = engine.generate([*corpus, 4, 5], PARAMS)
    assert engine.prefix_cache is not None
    engine.prefix_cache.flush()
    assert len(list(tmp_path.rglob("*.safetensors"))) == 6
    script = (
        "import json, sys, torch\n"
        "from pathlib import Path\n"
        "from corral.inference.engine import EngineOptions, load_engine\n"
        "from corral.inference.generation import SamplingParams\n"
        "o = EngineOptions(weights='fp32', cache_dir=Path(sys.argv[2]), block_size=16)\n"
        "e = load_engine(sys.argv[1], options=o)\n"
        "r = e.generate(json.loads(sys.argv[3]), SamplingParams(max_tokens=8))\n"
        "print(json.dumps({'cached': r.cached_tokens, 'ids': r.token_ids}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tiny_chat_model), str(tmp_path), json.dumps([*corpus, 4, 5])],
        capture_output=True, text=True, timeout=300, check=True,
    )
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there["cached"] == 96
    assert there["ids"] == here.token_ids


def test_corrupt_block_is_dropped_with_a_warning(
    loaded: tuple[Any, Any], tiny_chat_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _engine(loaded, tiny_chat_model, tmp_path)
    corpus = _corpus()
    expected = engine.generate([*corpus, 1], PARAMS)
    assert engine.prefix_cache is not None
    engine.prefix_cache.flush()
    third = tmp_path.glob(f"*/{engine.prefix_cache.block_hashes(corpus)[2]}.safetensors")
    victim = next(third)
    victim.write_bytes(b"\x00garbage" * 7)
    fresh = _engine(loaded, tiny_chat_model, tmp_path)  # empty memory: must read the disk
    with caplog.at_level(logging.WARNING, logger="corral.inference.engine.prefix_cache"):
        again = fresh.generate([*corpus, 1], PARAMS)
    assert again.cached_tokens == 2 * BLOCK  # blocks 0 and 1; the chain stops at the broken one
    assert again.token_ids == expected.token_ids
    assert "dropping unreadable prefix-cache block" in caplog.text
    assert not victim.exists() or victim.stat().st_size > 100  # deleted (or rewritten whole)


def test_hostile_block_files_are_misses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file with the right name but someone else's tokens, shape or format is never used."""
    from safetensors.torch import save_file

    cache = PrefixCache("f" * 64, block_size=4, disk_dir=tmp_path)
    ids = [1, 2, 3, 4]
    key = cache.block_hashes(ids)[0]
    folder = tmp_path / ("f" * 32)
    ok = {"format": "corral-kv-1", "fingerprint": "f" * 64, "tokens": "[1, 2, 3, 4]"}
    good_kv = torch.zeros(1, 2, 1, 4, 2)
    bad = [
        ({**ok, "tokens": "[9, 9, 9, 9]"}, good_kv),  # someone else's tokens
        (ok, torch.zeros(1, 2, 1, 3, 2)),  # a short block
        ({**ok, "format": "other"}, good_kv),
        ({**ok, "tokens": "{{{"}, good_kv),
        ({**ok, "fingerprint": "g" * 64}, good_kv),
    ]
    with caplog.at_level(logging.WARNING):
        for meta, kv in bad:
            save_file({"kv": kv}, str(folder / f"{key}.safetensors"), metadata=meta)
            assert cache.lookup(ids) == []
            assert not (folder / f"{key}.safetensors").exists()
    assert caplog.text.count("dropping unreadable") == len(bad)


def test_keys_chain_over_everything_before_a_block() -> None:
    a = PrefixCache("model-a", block_size=2)
    b = PrefixCache("model-b", block_size=2)
    assert a.block_hashes([1, 2, 3, 4])[1] != a.block_hashes([9, 9, 3, 4])[1]  # same block, other past
    assert a.block_hashes([1, 2])[0] != b.block_hashes([1, 2])[0]  # other model
    assert a.block_hashes([1, 2, 3]) == a.block_hashes([1, 2])  # partial blocks have no key


def test_memory_and_disk_stay_within_their_bounds(tmp_path: Path) -> None:
    kv = torch.zeros(2, 2, 1, 4, 8)  # 512 bytes of float32
    size = kv.numel() * kv.element_size()
    cache = PrefixCache("m" * 64, block_size=4, memory_bytes=3 * size, disk_dir=tmp_path, disk_bytes=4 * size)
    ids = list(range(40))
    cache.store(ids, [(i, kv.clone()) for i in range(10)])
    cache.flush()
    assert cache.memory_used <= 3 * size
    files = list(tmp_path.rglob("*.safetensors"))
    assert 0 < len(files) < 10
    assert sum(f.stat().st_size for f in files) <= 4 * size + 4096 * len(files)
    cache.clear_memory()
    assert cache.lookup(ids) == []  # block 0 was evicted from disk first (oldest): the chain is broken


def test_unwritable_cache_dir_loses_entries_not_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = PrefixCache("w" * 64, block_size=4, disk_dir=tmp_path)
    (tmp_path / ("w" * 32)).rmdir()
    (tmp_path / ("w" * 32)).write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        cache.store([1, 2, 3, 4], [(0, torch.zeros(1, 2, 1, 4, 2))])
        cache.flush()
    assert "could not persist" in caplog.text
    assert len(cache.lookup([1, 2, 3, 4])) == 1  # still served from memory


def test_counting_cached_tokens_reads_no_block(tmp_path: Path) -> None:
    """Planning asks how much of a prompt is cached: memory and disk blocks count, in chain order, and
    nothing is loaded into memory by asking."""
    kv = torch.zeros(2, 2, 1, 4, 8)
    cache = PrefixCache("c" * 64, block_size=4, disk_dir=tmp_path)
    ids = list(range(14))  # three whole blocks and a partial one
    cache.store(ids, [(0, kv.clone()), (1, kv.clone())])
    cache.flush()
    assert cache.cached_tokens(ids) == 8
    cache.clear_memory()
    assert cache.cached_tokens(ids) == 8 and cache.memory_used == 0  # on disk only, and not read
    assert cache.cached_tokens([99, *ids[1:]]) == 0  # another first block: the chain breaks at once
    assert PrefixCache("c" * 64, block_size=4).cached_tokens(ids) == 0  # no disk, nothing in memory
