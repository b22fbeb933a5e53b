"""Ingest throughput: Corral's pipeline vs a LangChain baseline on CPython's own ``Lib/``.

    .venv/bin/python bench/ingest.py [--limit-files N] [--max-tokens T]

Both sides index the same ``.py`` files of the interpreter's standard library (tests, idlelib,
site-packages and other non-library folders left out), copied once into a scratch folder:

* **corral**: ``corral.ingestion.ingest.ingest_now`` in embedded mode (SQLite + FTS5, Chroma on disk):
  tree-sitter chunks, exact token counts in the chat model's tokenizer, embeddings deduplicated by
  content hash and sorted by length, bf16 where the CPU has it (autodetected);
* **langchain**: ``DirectoryLoader`` + ``RecursiveCharacterTextSplitter`` (chunk_size 1000,
  overlap 200: the documented defaults people copy) + ``HuggingFaceEmbeddings`` (same MiniLM files)
  + ``Chroma.from_documents`` on disk.

Each side runs in its own process (so peak RSS is its own) with its models loaded before the clock
starts (load time printed separately). Then Corral re-indexes after one file changed: the
incremental path. Prints files/s, tokens/s (chat-model tokens), chunks/s, peak RSS and the ratio.
Needs the bench extra: ``pip install -c constraints.txt -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

EXCLUDED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__", "turtledemo",
                 "ensurepip", "lib2to3", "tkinter", "unittest", "venv"}


def stdlib_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if any(part in EXCLUDED_DIRS or part.startswith("test_") for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def prepare_corpus(dest: Path, limit_files: int | None, max_bytes: int | None) -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in stdlib_files():
        if limit_files is not None and len(files) >= limit_files:
            break
        size = path.stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            break
        target = dest / "Lib" / path.relative_to(lib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        files.append(target)
        total += size
    return files


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_corral(corpus_dir: Path, data_dir: Path) -> dict[str, Any]:
    os.environ["CORRAL_DATA_DIR"] = str(data_dir)
    from corral.core.db.migrate import ensure_schema
    from corral.ingestion.ingest import ingest_now
    from corral.ingestion.pipeline import configured_services

    t0 = time.perf_counter()
    ensure_schema()
    services = configured_services()
    services.token_counter.count(["warm up"])
    services.embedder.embed_documents(["warm up"])
    load = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = ingest_now("bench", corpus_dir / "Lib")
    seconds = time.perf_counter() - t0

    # One file changed: only it is parsed and embedded again.
    changed = sorted((corpus_dir / "Lib").rglob("*.py"))[0]
    changed.write_text(changed.read_text() + "\n# touched by bench/ingest.py\n")
    t0 = time.perf_counter()
    again = ingest_now("bench", corpus_dir / "Lib")
    reindex = time.perf_counter() - t0
    return {
        "side": "corral", "load_s": load, "seconds": seconds, "files": report.indexed,
        "failed": report.failed + report.skipped, "chunks": report.chunks, "tokens": report.tokens,
        "embedder_dtype": getattr(services.embedder, "dtype", "?"),
        "reindex_s": reindex, "reindex_indexed": again.indexed, "reindex_unchanged": again.unchanged,
        "peak_rss_mb": peak_rss_mb(),
    }


class _StubEmbedder:
    """Deterministic 384-d vectors from a hash: fills the index fast for the full-size re-index
    measurement, where only the second (real) run is timed."""

    model_name = "stub"

    def embed_documents(self, texts: Any) -> list[list[float]]:
        import hashlib

        out = []
        for t in texts:
            d = hashlib.sha256(t.encode()).digest()
            out.append([(d[i % 32] - 128) / 128 for i in range(384)])
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def run_reindex_full(corpus_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Index every eligible file (stub embeddings), then time a real re-index after one change."""
    import dataclasses

    os.environ["CORRAL_DATA_DIR"] = str(data_dir)
    from corral.core.db.migrate import ensure_schema
    from corral.ingestion.ingest import ingest_now
    from corral.ingestion.pipeline import configured as configured_module
    from corral.ingestion.pipeline import configured_services

    ensure_schema()
    real = configured_services()
    real.embedder.embed_documents(["warm up"])
    stub = dataclasses.replace(real, embedder=_StubEmbedder())
    configured_module_services = configured_module.configured_services
    configured_module.configured_services = lambda: stub  # type: ignore[assignment]
    t0 = time.perf_counter()
    first = ingest_now("bench", corpus_dir / "Lib")
    fill = time.perf_counter() - t0
    configured_module.configured_services = configured_module_services  # type: ignore[assignment]
    changed = sorted((corpus_dir / "Lib").rglob("*.py"))[0]
    changed.write_text(changed.read_text() + "\n# touched by bench/ingest.py\n")
    t0 = time.perf_counter()
    again = ingest_now("bench", corpus_dir / "Lib")
    reindex = time.perf_counter() - t0
    return {"files": first.indexed, "chunks": first.chunks, "tokens": first.tokens,
            "fill_s": fill, "reindex_s": reindex, "reindex_indexed": again.indexed,
            "reindex_unchanged": again.unchanged}


def run_langchain(corpus_dir: Path, data_dir: Path) -> dict[str, Any]:
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from corral.core.config import get_settings

    t0 = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(
        model_name=str(get_settings().resolved_embedding_model_path()),
        model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True},
    )
    embeddings.embed_documents(["warm up"])
    load = time.perf_counter() - t0

    t0 = time.perf_counter()
    loader = DirectoryLoader(str(corpus_dir / "Lib"), glob="**/*.py", loader_cls=TextLoader,
                             loader_kwargs={"encoding": "utf-8"}, silent_errors=True)
    docs = loader.load()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents(docs)
    Chroma.from_documents(chunks, embeddings, persist_directory=str(data_dir / "chroma"),
                          collection_name="bench")
    seconds = time.perf_counter() - t0
    return {"side": "langchain", "load_s": load, "seconds": seconds, "files": len(docs),
            "chunks": len(chunks), "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-files", type=int, default=None, help="index the first N files")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="stop adding files at about this many tokens (4 bytes a token)")
    parser.add_argument("--reindex-full", action="store_true",
                        help="only: index all eligible files (stub embeddings, untimed), then time "
                        "a real re-index after one file changed")
    parser.add_argument("--side", choices=["corral", "langchain", "reindex"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.side:  # child process: one side, result as JSON on the last line
        run = {"corral": run_corral, "langchain": run_langchain,
               "reindex": run_reindex_full}[args.side]
        print(json.dumps(run(args.dir, args.dir / f"data-{args.side}")))
        return

    if args.reindex_full:
        with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
            files = prepare_corpus(Path(tmp), None, None)
            proc = subprocess.run([sys.executable, __file__, "--side", "reindex", "--dir", tmp],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"re-index run failed:\n{proc.stderr[-4000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"full size: {r['files']} of {len(files)} files, {r['chunks']:,} chunks, "
              f"{r['tokens']:,} chat-model tokens (indexed with stub embeddings in {r['fill_s']:.0f}s)")
        print(f"re-index after one file changed: {r['reindex_s']:.2f}s "
              f"({r['reindex_indexed']} indexed, {r['reindex_unchanged']} unchanged)")
        return

    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        root = Path(tmp)
        max_bytes = args.max_tokens * 4 if args.max_tokens else None
        files = prepare_corpus(root, args.limit_files, max_bytes)
        size = sum(f.stat().st_size for f in files)
        print(f"corpus: {len(files)} files of {sysconfig.get_paths()['stdlib']} "
              f"({size / 1e6:.1f} MB), of {len(stdlib_files())} eligible")
        results = {}
        for side in ("corral", "langchain"):
            proc = subprocess.run([sys.executable, __file__, "--side", side, "--dir", str(root)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{side} failed:\n{proc.stderr[-4000:]}")
            results[side] = json.loads(proc.stdout.strip().splitlines()[-1])

    ours, base = results["corral"], results["langchain"]
    tokens = ours["tokens"]
    print(f"{'side':<10} {'files':>6} {'chunks':>7} {'seconds':>8} {'files/s':>8} {'tokens/s':>9} "
          f"{'chunks/s':>8} {'peak RSS':>9} {'model load':>10}")
    for r in (ours, base):
        print(f"{r['side']:<10} {r['files']:>6} {r['chunks']:>7} {r['seconds']:>8.1f} "
              f"{r['files'] / r['seconds']:>8.2f} {tokens / r['seconds']:>9.0f} "
              f"{r['chunks'] / r['seconds']:>8.1f} {r['peak_rss_mb']:>7.0f}MB {r['load_s']:>9.1f}s")
    print(f"corral: {tokens:,} chat-model tokens; embedder {ours['embedder_dtype']}; "
          f"{ours['failed']} files skipped/failed")
    print(f"throughput ratio (corral / langchain, same files): "
          f"{base['seconds'] / ours['seconds']:.2f}x")
    print(f"re-index after one file changed: {ours['reindex_s']:.2f}s "
          f"({ours['reindex_indexed']} indexed, {ours['reindex_unchanged']} unchanged)")


if __name__ == "__main__":
    main()
