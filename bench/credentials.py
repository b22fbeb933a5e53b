"""Credential scan at ingest: what it flags on ordinary code, and what it costs per megabyte.

Every text file of the given folders (default: the CPython standard library this interpreter runs
on) is scanned with :func:`corral.ingestion.safety.find_secrets`, and, for comparison in the same
run, with detect-secrets' two high-entropy string detectors (left out of the ingest scan). Any find
in the standard library is a false positive: it holds test vectors and documentation examples, never
a live credential. Prints the finds per detector kind, seconds per MB, and the slowest files.

    .venv/bin/python bench/credentials.py
    .venv/bin/python bench/credentials.py --show 20 /some/codebase
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from collections import Counter
from pathlib import Path

from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString

from corral.ingestion.safety import find_secrets

SUFFIXES = {".py", ".txt", ".rst", ".md", ".cfg", ".ini", ".toml", ".json", ".html", ".xml", ".c", ".h"}


def _files(roots: list[Path]) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
                  and "site-packages" not in p.parts)


def _entropy_finds(text: str) -> int:
    plugins = (Base64HighEntropyString(), HexHighEntropyString())
    return sum(1 for line in text.split("\n") if len(line) <= 4096
               for plugin in plugins for _ in plugin.analyze_string(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path)
    parser.add_argument("--show", type=int, default=10, help="finds to list")
    parser.add_argument("--no-entropy", action="store_true", help="skip the entropy comparison")
    args = parser.parse_args()
    roots = args.roots or [Path(sysconfig.get_paths()["stdlib"])]
    kinds: Counter[str] = Counter()
    shown: list[str] = []
    slow: list[tuple[float, str]] = []
    total_bytes = 0
    seconds = 0.0
    entropy = 0
    files = _files(roots)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        total_bytes += len(text.encode())
        t = time.perf_counter()
        found = find_secrets(text, path.name)
        took = time.perf_counter() - t
        seconds += took
        slow.append((took, str(path)))
        for f in found:
            kinds[f.kind] += 1
            if len(shown) < args.show:
                line = text.count("\n", 0, f.start) + 1
                shown.append(f"{path}:{line}: {f.kind}: {text[f.start:f.end][:60]!r}")
        if not args.no_entropy:
            entropy += _entropy_finds(text)
    mb = total_bytes / 1e6
    print(f"{len(files)} files, {mb:.1f} MB from {', '.join(map(str, roots))}")
    print(f"ingest scan: {sum(kinds.values())} finds {dict(kinds.most_common())}; "
          f"{seconds:.2f} s = {seconds / mb:.3f} s/MB")
    if not args.no_entropy:
        print(f"high-entropy detectors (not used at ingest): {entropy} finds")
    print("finds:", *shown, sep="\n  ")
    print("slowest files:", *(f"{t:.3f} s {p}" for t, p in sorted(slow, reverse=True)[:5]), sep="\n  ")


if __name__ == "__main__":
    main()
