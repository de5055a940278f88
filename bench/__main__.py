"""Run benchmarks: `python -m bench` (all) or `python -m bench NAME ...`; writes results.json."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.harness import BENCH_DIR, RESULTS_PATH, Entry  # noqa: E402

NOT_BENCHMARKS = {"harness", "browser", "__main__"}  # helpers, not benchmarks


def benchmark_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules([str(BENCH_DIR)])
                  if info.name not in NOT_BENCHMARKS)


def print_table(entries: list[Entry]) -> None:
    print(f"{'benchmark':<44} {'ours (s)':>10} {'peer':<34} {'peer (s)':>10} {'ratio':>8}")
    for e in entries:
        peer_s = f"{e.peer_s:10.4f}" if e.peer_s is not None else f"{'-':>10}"
        ratio = f"{e.ratio:7.2f}x" if e.ratio is not None else f"{'-':>8}"
        print(f"{e.name:<44} {e.ours_s:10.4f} {(e.peer or '-'):<34} {peer_s} {ratio}")
        if e.note:
            print(f"    {e.note}")


def main(argv: list[str]) -> int:
    known = benchmark_names()
    chosen = argv or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        print(f"Unknown benchmark(s): {', '.join(unknown)}. Valid: {', '.join(known)}.")
        return 2
    entries: list[Entry] = []
    for name in chosen:
        print(f"== {name}", flush=True)
        entries.extend(importlib.import_module(f"bench.{name}").run())
    print_table(entries)
    RESULTS_PATH.write_text(json.dumps([e.as_dict() for e in entries], indent=2) + "\n")
    print(f"wrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
