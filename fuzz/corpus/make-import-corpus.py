#!/usr/bin/python3
"""Writes the seed corpora of fuzz_import (fuzz/corpus/import/) and fuzz_manifest
(fuzz/corpus/manifest/): a few small valid archives and manifests, and hostile ones, built
with tests/e2e/relarchive.py. Deterministic: rerunning gives the same files.
Usage: fuzz/corpus/make-import-corpus.py"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))
import relarchive as ra  # noqa: E402


def release():
    return (ra.Release("demo")
            .file("app.py", b"print('hello')\n")
            .dir("lib")
            .file("lib/util.py", b"X = 1\n", mode=0o755)
            .link("current", "lib/util.py"))


def write(sub, name, data):
    d = HERE / sub
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)


def main():
    r = release()
    m = r.members(meta={"tag": "v1", "created_at": 1})
    write("import", "valid.tar.zst", ra.archive(m))
    write("import", "valid.tar", ra.archive(m, compress=False))
    write("import", "valid-nometa.tar", ra.archive(r.members(), compress=False))
    hostile = {
        "abs.tar": m + [ra.member("/tmp/x", data=b"x")],
        "dotdot.tar": m + [ra.member("files/../../x", data=b"x")],
        "extra.tar": m + [ra.member("files/extra", data=b"x")],
        "missing.tar": [x for x in m if x[0].name != "files/lib/util.py"],
        "hardlink.tar": m[:-1] + [ra.member("files/current", kind="hardlink", target="files/app.py")],
        "fifo.tar": m[:-1] + [ra.member("files/current", kind="fifo")],
        "notfirst.tar": m[1:] + m[:1],
    }
    for name, members in hostile.items():
        write("import", name, ra.archive(members, compress=False))
    bad_link = release().link("passwd", "/etc/passwd")
    write("import", "symlink-out.tar", ra.archive(bad_link.members(), compress=False))
    good = ra.archive(m)
    write("import", "truncated.tar.zst", good[: len(good) // 2])

    write("manifest", "valid.json", r.manifest())
    write("manifest", "empty.json", ra.Release("e").manifest())
    write("manifest", "links.json",
          ra.Release("l").link("a", ".").dir("d").link("d/up", "..").file("x", b"").manifest())
    write("manifest", "escape.json", bad_link.manifest())
    obj = r.manifest_obj()
    obj["entries"].reverse()
    write("manifest", "unsorted.json", ra.canonical(obj))
    obj = release().manifest_obj()
    obj["deps"] = [{"ecosystem": "python", "name": "eventlet", "version": "0.20.0",
                    "source": "requirements.txt"}]
    write("manifest", "deps.json", ra.canonical(obj))


if __name__ == "__main__":
    os.umask(0o022)
    main()
