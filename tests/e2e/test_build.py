"""cairn build / releases / verify / diff through the real binary: releases are content
addressed, immutable, and their differences readable (stories 000 and 001)."""
import json
import os
import stat
import time
from pathlib import Path

import pytest

CONFIG = """\
app: demo
build:
  command: {command}
  exclude: [".git", "__pycache__", "data"]
  pins: {pins}
run:
  command: ["python3", "app.py"]
  env: {{ LOG_LEVEL: info }}
listen: 18080
"""


def make_app(root: Path, files=None, command="[]", pins="require"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "cairn.yml").write_text(CONFIG.format(command=command, pins=pins))
    files = files if files is not None else {
        "app.py": "print('hello')\n",
        "lib/util.py": "X = 1\n",
        "static/logo.bin": b"\x89PNG\x00\x01\x02" * 100,
        "requirements.txt": "eventlet==0.20.0\n",
    }
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return root


def objects(state: Path):
    base = state / "objects"
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()} if base.exists() else set()


def build(cairn, app, *args, check=0):
    return cairn.json("build", *args, cwd=app, check=check)


def settle(root: Path):
    """Wait (bounded) until every file's timestamps are >150 ms old, so the build cache may
    trust them (it refuses entries changed within 100 ms of the walk: 'racy' files)."""
    newest = max(max(p.lstat().st_mtime, p.lstat().st_ctime) for p in root.rglob("*"))
    deadline = time.time() + 5
    while time.time() < newest + 0.15 and time.time() < deadline:
        time.sleep(0.01)


def test_identical_input_identical_id(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r1 = build(cairn, a)
    assert r1["id"].startswith("sha256:") and len(r1["id"]) == 71
    assert not r1["existed"]
    r2 = build(cairn, a)
    assert r2["id"] == r1["id"] and r2["existed"] and r2["new_objects"] == 0
    # the same bytes elsewhere, into another state directory: same id
    b = make_app(tmp_path / "elsewhere" / "b")
    other = type(cairn)(tmp_path / "state2", tmp_path)
    assert other.json("build", cwd=b)["id"] == r1["id"]
    # plain output: the id alone on stdout, the summary on stderr
    p = cairn.run("build", cwd=a, check=0)
    assert p.stdout.strip() == r1["id"]
    assert "already stored" in p.stderr


def test_one_byte_change_changes_one_object_and_the_id(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r1 = build(cairn, a)
    before = objects(cairn.state)
    p = a / "lib" / "util.py"
    p.write_text("X = 2\n")
    r2 = build(cairn, a)
    after = objects(cairn.state)
    assert r2["id"] != r1["id"]
    # exactly one new file object plus the new manifest
    assert len(after - before) == 2
    assert r2["id"].split(":")[1][2:] in {o.split("/")[1] for o in after - before}
    d = cairn.json("diff", r1["id"], r2["id"])
    assert [f["path"] for f in d["files"]] == ["lib/util.py"]
    assert d["files"][0]["status"] == "modified"
    assert "-X = 1\n+X = 2\n" in d["files"][0]["diff"]


def test_rebuild_rehashes_only_changed_files(cairn, tmp_path):
    files = {f"src/f{i:03}.txt": f"file {i}\n" * 50 for i in range(200)}
    a = make_app(tmp_path / "a", files=files, pins="warn")
    settle(a)
    r1 = build(cairn, a)
    assert r1["hashed"] == r1["files"]
    r2 = build(cairn, a)
    assert r2["hashed"] == 0 and r2["id"] == r1["id"]
    (a / "src" / "f007.txt").write_text("changed\n")
    r3 = build(cairn, a)
    assert r3["hashed"] == 1 and r3["new_objects"] == 1 and r3["id"] != r1["id"]


def test_modes_and_symlinks_are_kept(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    (a / "run.sh").write_text("#!/bin/sh\n")
    (a / "run.sh").chmod(0o755)
    (a / "lib" / "alias.py").symlink_to("util.py")
    r = build(cairn, a)
    (a / "run.sh").chmod(0o644)
    r2 = build(cairn, a)
    assert r2["id"] != r["id"]
    d = cairn.json("diff", r["id"], r2["id"])
    assert d["files"] == [{"path": "run.sh", "status": "mode_changed",
                           "old": d["files"][0]["old"], "new": d["files"][0]["new"]}]
    assert d["files"][0]["old"]["mode"] == "755" and d["files"][0]["new"]["mode"] == "644"


@pytest.mark.parametrize("kind", ["escape", "absolute", "fifo"])
def test_refuses_what_cannot_be_a_release(cairn, tmp_path, kind):
    a = make_app(tmp_path / "a")
    if kind == "escape":
        (a / "lib" / "x").symlink_to("../../outside")
    elif kind == "absolute":
        (a / "passwd").symlink_to("/etc/passwd")
    else:
        os.mkfifo(a / "pipe")
    p = cairn.run("build", cwd=a, check=2)
    assert {"escape": "lib/x", "absolute": "passwd", "fifo": "pipe"}[kind] in p.stderr
    assert "build.exclude" in p.stderr
    assert objects(cairn.state) == set()


def test_build_command_runs_once_in_a_scratch_copy(cairn, tmp_path):
    cmd = '["python3", "-c", "import os; open(\'gen.txt\',\'w\').write(str(os.getpid())); open(\'app.py\',\'a\').write(\'# built\\\\n\')"]'
    a = make_app(tmp_path / "a", command=cmd)
    original = (a / "app.py").read_text()
    r = build(cairn, a)
    assert not (a / "gen.txt").exists(), "build.command must not touch the source"
    assert (a / "app.py").read_text() == original
    d = cairn.json("diff", str(a), r["id"])
    changed = {f["path"]: f["status"] for f in d["files"]}
    assert changed == {"gen.txt": "added", "app.py": "modified"}


def test_failed_build_command_stores_nothing(cairn, tmp_path):
    a = make_app(tmp_path / "a", command='["python3", "-c", "import sys; sys.exit(3)"]')
    p = cairn.run("build", cwd=a, check=1)
    assert "exited with status 3" in p.stderr
    assert cairn.json("releases")["releases"] == []


def test_unpinned_dependencies_refuse_the_build(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    (a / "requirements.txt").write_text("eventlet>=0.20\n")
    p = cairn.run("build", cwd=a, check=1)
    assert "requirements.txt:1:1" in p.stderr and "eventlet" in p.stderr
    assert "build.pins" in p.stderr
    assert cairn.json("releases")["releases"] == []
    # build.pins: warn builds, and says so
    (a / "cairn.yml").write_text((a / "cairn.yml").read_text().replace("pins: require", "pins: warn"))
    p = cairn.run("build", cwd=a, check=0)
    assert "warning" in p.stderr


def test_releases_tags_and_refs(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r1 = build(cairn, a, "--tag", "v1")
    (a / "app.py").write_text("print('v2')\n")
    r2 = build(cairn, a, "--tag", "v2")
    rel = cairn.json("releases")["releases"]
    assert [(x["id"], x["tag"], x["state"]) for x in rel] == [(r1["id"], "v1", "untested"),
                                                              (r2["id"], "v2", "untested")]
    # a tag never moves
    (a / "app.py").write_text("print('v3')\n")
    p = cairn.run("build", "--tag", "v1", cwd=a, check=2)
    assert "tag 'v1' already names" in p.stderr
    # REFs: tag, unique prefix, full id
    for ref in ("v1", r1["id"][:15], r1["id"], r1["id"][7:19]):
        assert cairn.json("verify", ref)["releases"][0]["id"] == r1["id"]
    p = cairn.run("verify", "nope", check=2)
    assert "no release matches 'nope'" in p.stderr
    text = cairn.run("releases", check=0).stdout
    assert r1["id"][7:19] in text and "v2" in text


def test_verify_names_every_corrupt_file(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r = build(cairn, a)
    assert cairn.json("verify", r["id"])["releases"][0]["ok"] is True
    m = cairn.json("diff", str(tmp_path / "empty_dir_does_not_exist"), r["id"], check=2)
    assert m["error"]["code"] == "input"
    # corrupt the object of lib/util.py and delete the one of app.py
    import hashlib
    def obj(content):
        h = hashlib.sha256(content).hexdigest()
        return cairn.state / "objects" / h[:2] / h[2:]
    util = obj(b"X = 1\n")
    util.chmod(0o644)
    util.write_bytes(b"X = 666\n")
    obj(b"print('hello')\n").unlink()
    v = cairn.json("verify", r["id"], check=1)["releases"][0]
    assert v["ok"] is False
    problems = {p["path"]: p["problem"] for p in v["problems"]}
    assert set(problems) == {"lib/util.py", "app.py"}
    assert "corrupt" in problems["lib/util.py"] and "missing" in problems["app.py"]
    p = cairn.run("verify", check=1)
    assert "lib/util.py" in p.stdout and "app.py" in p.stdout


def test_diff_dependencies_and_config(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    meta = "Metadata-Version: 2.1\nName: eventlet\nVersion: {}\n"
    (a / "vendor" / "eventlet-0.20.0.dist-info").mkdir(parents=True)
    (a / "vendor" / "eventlet-0.20.0.dist-info" / "METADATA").write_text(meta.format("0.20.0"))
    r1 = build(cairn, a)
    os.rename(a / "vendor" / "eventlet-0.20.0.dist-info", a / "vendor" / "eventlet-0.20.1.dist-info")
    (a / "vendor" / "eventlet-0.20.1.dist-info" / "METADATA").write_text(meta.format("0.20.1"))
    (a / "requirements.txt").write_text("eventlet==0.20.1\n")
    (a / "cairn.yml").write_text((a / "cairn.yml").read_text().replace("LOG_LEVEL: info", "LOG_LEVEL: debug"))
    r2 = build(cairn, a)
    d = cairn.json("diff", r1["id"], r2["id"])
    assert d["deps"] == [{"ecosystem": "python", "name": "eventlet", "old": ["0.20.0"], "new": ["0.20.1"]}]
    assert {"key": "run.env.LOG_LEVEL", "old": "info", "new": "debug"} in d["config"]
    # the moved dist-info directory is one renamed file with a one-line diff, not add + remove
    moved = [f for f in d["files"] if f["status"] == "renamed"]
    assert [(f["old_path"], f["path"]) for f in moved] == [
        ("vendor/eventlet-0.20.0.dist-info/METADATA", "vendor/eventlet-0.20.1.dist-info/METADATA")]
    assert "-Version: 0.20.0\n+Version: 0.20.1\n" in moved[0]["diff"]
    assert not [f for f in d["files"] if f["status"] in ("added", "removed")]
    text = cairn.run("diff", r1["id"], r2["id"], check=0).stdout
    assert "python eventlet 0.20.0 → 0.20.1" in text
    assert "run.env.LOG_LEVEL: info → debug" in text
    assert "-eventlet==0.20.0\n+eventlet==0.20.1" in text
    assert "R vendor/eventlet-0.20.0.dist-info/METADATA → vendor/eventlet-0.20.1.dist-info/METADATA" in text
    # the binary file is compared by digest and noted, never printed
    (a / "static" / "logo.bin").write_bytes(b"\x89PNG\x00\x09" * 100)
    d = cairn.json("diff", r2["id"], str(a))
    logo = [f for f in d["files"] if f["path"] == "static/logo.bin"][0]
    assert logo.get("binary") is True and "diff" not in logo
    same = cairn.json("diff", r1["id"], r1["id"])
    assert same["differs"] is False and same["files"] == []
