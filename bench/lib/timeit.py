#!/usr/bin/python3
"""timeit: the benchmarks' stand-in for hyperfine when it is not installed.

Takes the subset of hyperfine's options the benchmarks use and writes the same JSON shape
(`results[].command/median/mean/stddev/min/max/times`), so one report reads either:
  timeit.py --runs N [--warmup W] [--export-json FILE] \
            (-n NAME [--prepare CMD] COMMAND)...
Commands and prepare steps run through `bash -c` like hyperfine's default shell; prepare time is
not counted. A command that exits non-zero stops the benchmark (exit 1), as hyperfine does.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

MAX_RUNS = 1000


def run(cmd, what):
    p = subprocess.run(["bash", "-c", cmd], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.stderr.write(f"timeit: {what} failed (exit {p.returncode}): {cmd}\n"
                         f"{p.stderr.decode(errors='replace')[-2000:]}")
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--export-json")
    ap.add_argument("benchmarks", nargs="*", metavar="(-n NAME [--prepare CMD] COMMAND)...")
    argv = sys.argv[1:]
    cut = next((i for i, t in enumerate(argv) if t in ("-n", "--command-name", "--prepare")),
               len(argv))
    a = ap.parse_args(argv[:cut])
    if not 1 <= a.runs <= MAX_RUNS or not 0 <= a.warmup <= MAX_RUNS:
        ap.error(f"--runs and --warmup must be at most {MAX_RUNS} (runs at least 1)")

    benches, cur, rest = [], {}, a.benchmarks + argv[cut:]
    while rest:
        tok = rest.pop(0)
        if tok in ("-n", "--command-name", "--prepare") and not rest:
            ap.error(f"{tok} needs a value")
        if tok in ("-n", "--command-name"):
            cur["name"] = rest.pop(0)
        elif tok == "--prepare":
            cur["prepare"] = rest.pop(0)
        else:
            cur["command"] = tok
            benches.append(cur)
            cur = {}
    if not benches or cur:
        ap.error("expected (-n NAME [--prepare CMD] COMMAND)...")

    results = []
    for b in benches:
        name = b.get("name", b["command"])
        times = []
        for i in range(a.warmup + a.runs):
            if b.get("prepare"):
                run(b["prepare"], f"prepare of {name}")
            t0 = time.perf_counter()
            run(b["command"], name)
            dt = time.perf_counter() - t0
            if i >= a.warmup:
                times.append(dt)
        r = {"command": name, "mean": statistics.fmean(times), "median": statistics.median(times),
             "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
             "min": min(times), "max": max(times), "times": times}
        results.append(r)
        print(f"{name}: median {r['median']:.3f} s (min {r['min']:.3f}, max {r['max']:.3f}, "
              f"{len(times)} runs)", flush=True)
    if a.export_json:
        with open(a.export_json, "w") as f:
            json.dump({"results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
