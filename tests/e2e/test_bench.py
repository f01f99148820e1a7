"""The build benchmark's own tools: the tree generator is deterministic and gives the promised
mix, bench/build/run measures the pipeline (with either timer) and cleans up, and the report
computes ratio = pipeline / cairn and fails --check when a goal is missed."""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"
GEN = ROOT / "bench" / "build" / "gen-tree.py"
KiB, MiB = 1 << 10, 1 << 20


def gen(out, *args):
    p = subprocess.run([PY, str(GEN), "--out", str(out), *args], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def snapshot(root):
    """path → (kind, size or target, sha256, mtime) for everything under root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p), None, st.st_mtime_ns)
            elif os.path.isdir(p):
                out[rel] = ("dir", None, None, st.st_mtime_ns)
            else:
                out[rel] = ("file", st.st_size, hashlib.sha256(Path(p).read_bytes()).hexdigest(),
                            st.st_mtime_ns)
    return out


def test_gen_tree_is_deterministic_with_the_promised_mix(tmp_path):
    info = gen(tmp_path / "a", "--files", "400", "--bytes", "40M", "--seed", "7",
               "--list", str(tmp_path / "small.txt"))
    gen(tmp_path / "b", "--files", "400", "--bytes", "40M", "--seed", "7")
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert a == b
    assert snapshot(tmp_path / "a") != snapshot(gen(tmp_path / "c", "--files", "400", "--bytes",
                                                    "40M", "--seed", "8")["out"])

    files = {k: v for k, v in a.items() if v[0] == "file"}
    links = {k: v for k, v in a.items() if v[0] == "link"}
    sizes = [v[1] for v in files.values()]
    assert len(files) == info["files"] == 400
    assert abs(sum(sizes) - 40 * MiB) < 0.02 * 40 * MiB
    assert sum(sizes) == info["bytes"]
    assert sum(1 * KiB <= s <= 16 * KiB for s in sizes) >= 300          # many small
    assert sum(64 * KiB <= s <= 512 * KiB for s in sizes) >= 5           # some medium
    assert 1 <= sum(s >= 5 * MiB for s in sizes) <= 8                    # a few large
    assert max(k.count("/") for k in files) >= 2                          # nested
    assert 1 <= len(links) <= 8
    for rel, (_, target, _, _) in links.items():
        assert not target.startswith("/")
        resolved = (tmp_path / "a" / rel).resolve()
        assert resolved.is_file() and (tmp_path / "a").resolve() in resolved.parents
    assert "app: benchtree" in (tmp_path / "a" / "cairn.yml").read_text()
    assert "pins: warn" in (tmp_path / "a" / "cairn.yml").read_text()
    small = (tmp_path / "small.txt").read_text().split()
    assert len(small) == info["small"] and all(files[s][1] <= 16 * KiB for s in small)
    # small files are text, large ones are not
    assert (tmp_path / "a" / small[0]).read_bytes().decode("ascii")


def test_gen_tree_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    p = subprocess.run([PY, str(GEN), "--out", str(tmp_path / "x"), "--files", "10"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "not an empty directory" in p.stderr
    assert (tmp_path / "x" / "keep").read_text() == "mine"


def test_build_bench_measures_the_pipeline_and_cleans_up(tmp_path):
    # the stand-in timer: always present (hyperfine is a bench-only package)
    scratch, out = tmp_path / "scratch", tmp_path / "out"
    scratch.mkdir()
    env = dict(os.environ, BENCH_DIR=str(scratch), BENCH_OUT=str(out), BENCH_TIMER="timeit",
               CAIRN_BIN=str(tmp_path / "no-cairn-here"))
    p = subprocess.run([str(ROOT / "bench" / "build" / "run"), "--files", "40", "--bytes", "2M",
                        "--runs", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "measuring the pipeline only" in p.stderr
    assert "| rebuild, 1 file changed | n/a" in p.stdout
    r = json.loads((out / "build.json").read_text())
    assert r["bench"] == "build" and r["cairn_available"] is False
    assert r["tree"]["files"] == 40 and r["runs"] == 2
    assert [c["case"] for c in r["cases"]] == ["first build", "first build (zstd -T0)",
                                              "rebuild, 1 file changed"]
    for c in r["cases"]:
        assert c["cairn_median_s"] is None and c["ratio"] is None
        assert 0 < c["pipeline_median_s"] < 60
    assert list(scratch.iterdir()) == []   # the scratch tree is gone


def write_timings(path, medians):
    path.write_text(json.dumps({"results": [{"command": k, "median": v}
                                            for k, v in medians.items()]}))


@pytest.mark.parametrize("rebuild_cairn, met, rc", [(0.05, True, 0), (0.5, False, 1)])
def test_report_ratio_goals_and_check(tmp_path, rebuild_cairn, met, rc):
    write_timings(tmp_path / "first.json",
                  {"cairn": 2.0, "pipeline -T1": 4.0, "pipeline -T0": 2.5})
    write_timings(tmp_path / "rebuild.json", {"cairn": rebuild_cairn, "pipeline -T1": 4.0})
    (tmp_path / "meta.json").write_text(json.dumps(
        {"tree": {"files": 10, "bytes": MiB, "seed": 1}, "tool": "test", "runs": 1,
         "notes": ["a note"]}))
    p = subprocess.run([PY, str(ROOT / "bench" / "build" / "report.py"),
                        "--first", str(tmp_path / "first.json"),
                        "--rebuild", str(tmp_path / "rebuild.json"),
                        "--meta", str(tmp_path / "meta.json"),
                        "--out", str(tmp_path / "build.json"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == rc, p.stdout + p.stderr
    cases = {c["case"]: c for c in json.loads((tmp_path / "build.json").read_text())["cases"]}
    assert cases["first build"]["ratio"] == pytest.approx(2.0)
    assert cases["first build"]["met"] is True
    assert cases["first build (zstd -T0)"]["met"] is None
    assert cases["rebuild, 1 file changed"]["ratio"] == pytest.approx(4.0 / rebuild_cairn)
    assert cases["rebuild, 1 file changed"]["met"] is met
    assert ("| NO " in p.stdout) is not met
    assert "note: a note" in p.stdout
