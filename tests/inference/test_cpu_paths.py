"""The engine runs on every CPU of its kind: it reads what the CPU supports, picks a weight format that
runs there, refuses one that cannot run with the reason (never a crash inside oneDNN), and each format
it picks computes what fp32 computes. An AVX2-only host is emulated on any host with torch's own
``ATEN_CPU_CAPABILITY=avx2`` in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from corral.inference.chat import build_prompt
from corral.inference.engine import (
    CpuFeatures,
    EngineOptions,
    WeightFormat,
    choose_format,
    cpu_features,
    engine_from_hf,
    load_engine,
    resolve_format,
)
from corral.inference.engine.loading import load_hf_model
from corral.inference.errors import InferenceError
from corral.inference.generation import SamplingParams

AVX2_HOST = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"})
AVX512_BF16_HOST = AVX2_HOST | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "avx512_vnni"}


def test_an_avx2_only_host_stores_bf16_and_refuses_packed_bf16_clearly() -> None:
    cpu = CpuFeatures("AVX2", AVX2_HOST)
    assert cpu.best_format() == "bf16"
    assert resolve_format("auto", cpu) == "bf16"
    assert resolve_format("fp32", cpu) == "fp32" and resolve_format("int8", cpu) == "int8"
    with pytest.raises(InferenceError, match=r"cannot use bf16-packed weights: .*avx512bw"):
        resolve_format("bf16-packed", cpu)


def test_an_avx512_bf16_host_gets_packed_bf16() -> None:
    cpu = CpuFeatures("AVX512", AVX512_BF16_HOST)
    assert cpu.best_format() == "bf16-packed"
    assert "avx512_bf16" in cpu.describe()


def test_avx512_without_bf16_arithmetic_stores_bf16() -> None:
    cpu = CpuFeatures("AVX512", AVX512_BF16_HOST - {"avx512_bf16"})
    assert cpu.packed_bf16 and not cpu.bf16_arithmetic
    assert cpu.best_format() == "bf16"


def test_torch_capped_at_avx2_hides_the_avx512_flags() -> None:
    """``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 host: torch's kernels stop at AVX2, and so do we."""
    cpu = CpuFeatures("AVX2", AVX512_BF16_HOST)
    assert not cpu.bf16_arithmetic and not cpu.packed_bf16
    assert cpu.best_format() == "bf16"
    assert "avx512" not in cpu.describe()


def test_without_avx2_the_engine_computes_in_fp32() -> None:
    assert CpuFeatures("DEFAULT", frozenset({"sse4_2"})).best_format() == "fp32"


def test_unknown_formats_are_refused_by_name() -> None:
    with pytest.raises(InferenceError, match="'fp8' is not one of auto"):
        resolve_format("fp8")


def test_this_host_picks_a_format_it_can_run(tiny_chat_model: Path) -> None:
    """``auto`` on this host loads and generates, whatever the host has."""
    cpu = cpu_features()
    engine = load_engine(tiny_chat_model, options=EngineOptions())
    # The CPU's best format, except that with the native decode kernels bf16 beats packed bf16.
    assert engine.weights == choose_format("auto")
    assert engine.weights == cpu.best_format() or (engine.weights == "bf16" and cpu.packed_bf16)
    out = engine.generate([1, 2, 3, 4], SamplingParams(max_tokens=4))
    assert len(out.token_ids) >= 1


_CHILD = """
import json, sys
from corral.inference.engine import EngineOptions, cpu_features, load_engine
from corral.inference.errors import InferenceError
from corral.inference.generation import SamplingParams
from corral.inference.engine import choose_format
out = {"capability": cpu_features().capability, "auto": choose_format("auto")}
engine = load_engine(sys.argv[1], options=EngineOptions())
out["loaded"] = engine.weights
out["ids"] = engine.generate([1, 2, 3, 4, 5], SamplingParams(max_tokens=6)).token_ids
try:
    load_engine(sys.argv[1], options=EngineOptions(weights="bf16-packed"))
    out["packed"] = "loaded"
except InferenceError as exc:
    out["packed"] = str(exc)
print(json.dumps(out))
"""


def test_an_emulated_avx2_host_runs_and_refuses_packed_bf16(tiny_chat_model: Path) -> None:
    """In a process whose torch is capped at AVX2, auto picks a format without AVX-512, generation runs,
    and asking for packed bf16 is an ``InferenceError`` that names what is missing, not a oneDNN abort."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tiny_chat_model)], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["capability"] == "AVX2"
    assert out["loaded"] == out["auto"] and out["auto"] in ("bf16", "fp32")
    assert len(out["ids"]) >= 1
    assert "cannot use bf16-packed weights" in out["packed"]


@pytest.fixture(scope="module")
def smollm2() -> tuple[Path, str, Any, Any]:
    from corral.core.config import Settings

    folder, gguf = Settings(chat_model="smollm2-135m").resolved_chat_model()
    assert gguf is not None
    tok, hf = load_hf_model(folder, gguf)
    return folder, gguf, tok, hf


_PASSAGE = (
    "The json module can serialize Python objects to text. Pass indent=4 to json.dumps to pretty-print "
    "the output with four spaces per level, and sort_keys=True to order the keys of every object."
)


@pytest.mark.model
@pytest.mark.parametrize(("fmt", "floor"), [("bf16", 0.97), ("int8", 0.88), ("bf16-packed", 0.95)])
def test_each_weight_format_answers_as_fp32_does(
    smollm2: tuple[Path, str, Any, Any], fmt: WeightFormat, floor: float
) -> None:
    """On the real model, each format this CPU runs picks fp32's next token over real text at most
    positions, and answers a short question correctly."""
    if (why := cpu_features().refusal(fmt)) is not None:
        pytest.skip(f"this CPU ({cpu_features().describe()}) has no {fmt} path: {why}")
    folder, gguf, tok, hf = smollm2
    fp32 = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=EngineOptions(weights="fp32"))
    other = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=EngineOptions(weights=fmt))
    ids = torch.tensor([tok(_PASSAGE)["input_ids"]])
    a = fp32.model.forward(ids, fp32.model.new_cache(ids.shape[1]), 0, all_logits=True)
    b = other.model.forward(ids, other.model.new_cache(ids.shape[1]), 0, all_logits=True)
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    assert agree >= floor, f"{fmt} picks fp32's next token at only {agree:.0%} of positions"
    prompt = build_prompt(tok, [{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in other.generate(prompt, SamplingParams(max_tokens=16)).text


@pytest.mark.model
def test_a_converted_gguf_is_kept_and_read_back(smollm2: tuple[Path, str, Any, Any], tmp_path: Path) -> None:
    """The first load converts the GGUF and keeps the result under its hash; the next load reads that
    copy (not the GGUF) and computes the same logits; a damaged copy is rebuilt, not fatal."""
    folder, gguf, _, _ = smollm2
    options = EngineOptions(weights="fp32", converted_dir=tmp_path)
    first = load_engine(folder, gguf, options)
    copies = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(copies) == 1 and (copies[0] / "model.safetensors").is_file()
    tok, hf = load_hf_model(folder, gguf, converted_dir=tmp_path)
    assert Path(hf.name_or_path) == copies[0]
    second = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=options)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    torch.testing.assert_close(first.model.forward(ids, first.model.new_cache(6), 0),
                               second.model.forward(ids, second.model.new_cache(6), 0))
    (copies[0] / "model.safetensors").write_bytes(b"not a safetensors file")
    _, rebuilt = load_hf_model(folder, gguf, converted_dir=tmp_path)
    assert Path(rebuilt.name_or_path) == folder
    assert (copies[0] / "model.safetensors").stat().st_size > 1_000_000
