#!/usr/bin/python3
"""report: turns the build benchmark's timing files (hyperfine --export-json, or
bench/lib/timeit.py) into the comparison table and bench/out/build.json.

ratio = pipeline median / cairn median: how many times faster `cairn build` is than
`tar | zstd | sha256sum` over the same tree. Exit 1 with --check if a goal is not met.
"""
import argparse
import json
import sys

CASES = [
    # (case, timings key, pipeline command name, goal ratio or None)
    ("first build", "first", "pipeline -T1", 1.5),
    ("first build (zstd -T0)", "first", "pipeline -T0", None),
    ("rebuild, 1 file changed", "rebuild", "pipeline -T1", 20.0),
]


def medians(path):
    with open(path) as f:
        return {r["command"]: r["median"] for r in json.load(f)["results"]}


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first", required=True)
    ap.add_argument("--rebuild", required=True)
    ap.add_argument("--meta", required=True, help="JSON file: tree, tool, runs, notes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", action="store_true", help="exit 1 if a goal is not met")
    a = ap.parse_args()
    t = {"first": medians(a.first), "rebuild": medians(a.rebuild)}
    with open(a.meta) as f:
        meta = json.load(f)

    rows = []
    for case, key, pipe, goal in CASES:
        c, p = t[key].get("cairn"), t[key].get(pipe)
        if p is None:
            continue
        ratio = p / c if c else None
        met = None if goal is None or ratio is None else ratio >= goal
        rows.append({"case": case, "cairn_median_s": c, "pipeline": pipe,
                     "pipeline_median_s": p, "ratio": ratio, "goal": goal, "met": met})

    head = ["case", "cairn (median s)", "pipeline (median s)", "ratio (pipeline/cairn)",
            "goal", "met?"]
    cells = [[r["case"], fmt(r["cairn_median_s"], ".3f"), fmt(r["pipeline_median_s"], ".3f"),
              "n/a" if r["ratio"] is None else f"{r['ratio']:.1f}x",
              "-" if r["goal"] is None else f">= {r['goal']:g}x",
              {True: "yes", False: "NO", None: "-"}[r["met"]]] for r in rows]
    w = [max(len(x) for x in col) for col in zip(head, *cells)]
    line = lambda xs: "| " + " | ".join(x.ljust(n) for x, n in zip(xs, w)) + " |"
    tree = meta["tree"]
    print(f"\nbuild: cairn build vs tar -cf - . | zstd -q | sha256sum  "
          f"({tree['files']} files, {tree['bytes'] / 2**20:.0f} MiB, seed {tree['seed']}; "
          f"{meta['tool']}, {meta['runs']} runs each)")
    print(line(head))
    print("|" + "|".join("-" * (n + 2) for n in w) + "|")
    for c in cells:
        print(line(c))
    for n in meta.get("notes", []):
        print(f"  note: {n}")

    out = dict(meta, bench="build", cases=rows)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"  written: {a.out}")
    if a.check and any(r["met"] is False or (r["goal"] and r["met"] is None) for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
