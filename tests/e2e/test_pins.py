"""`cairn pins`: the fixture tree's findings exactly, exit codes, --exclude, the human form,
skipped directories and symlinks, and the two stories it exists for (000 eventlet, 001 nginx)."""
import os
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

PINS = FIXTURES / "pins"
DIGEST = "sha256:" + "ab" * 32


def expected():
    lines = (PINS / "EXPECTED").read_text().splitlines()
    return [l for l in lines if l.strip() and not l.startswith("#")]


def found(report):
    return [f"{f['file']}:{f['line']}:{f['col']} {f['spec']}" for f in report["findings"]]


def test_fixture_tree_exactly_as_expected(cairn, copy_tree):
    tree = copy_tree(PINS)
    report = cairn.json("pins", tree, check=1)
    assert found(report) == expected()
    assert report["files_scanned"] == 27
    for f in report["findings"]:
        assert set(f) == {"file", "line", "col", "ecosystem", "spec", "problem", "fix"}
        assert f["ecosystem"] in {"python", "node", "ruby", "go", "rust", "docker", "apt", "apk"}
        assert f["problem"] and f["fix"]
    # enough of both kinds to mean something
    assert len(expected()) >= 30


def test_default_dir_is_cwd(cairn, copy_tree):
    tree = copy_tree(PINS)
    report = cairn.json("pins", check=1, cwd=tree)
    assert found(report) == expected()


def test_skipped_dirs_and_symlinks_change_nothing(cairn, copy_tree, tmp_path):
    tree = copy_tree(PINS)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "requirements.txt").write_text("eventlet\n")
    for d in [".git", "__pycache__", "api/node_modules/x", "api/lib/site-packages/y",
              "api/.tox/py311"]:
        (tree / d).mkdir(parents=True)
        (tree / d / "requirements.txt").write_text("eventlet\n")
        (tree / d / "Dockerfile").write_text("FROM nginx\n")
    os.symlink(outside, tree / "linked-dir")
    os.symlink(outside / "requirements.txt", tree / "requirements-linked.txt")
    (tree / "api/requirements-dev.txt").write_text(
        (tree / "api/requirements-dev.txt").read_text() + "-r ../../outside/requirements.txt\n")
    report = cairn.json("pins", tree, check=1)
    assert found(report) == expected()


def test_exclude_names_and_paths(cairn, copy_tree):
    tree = copy_tree(PINS)
    report = cairn.json("pins", tree, "--exclude", "legacy", "--exclude", "proxy", check=1)
    want = [l for l in expected() if not l.startswith(("legacy/", "proxy/"))]
    assert found(report) == want
    # a path excludes that file only; what it included with -r is then not read either
    report = cairn.json("pins", tree, "--exclude", "api/requirements.txt", check=1)
    want = [l for l in expected()
            if not l.startswith(("api/requirements.txt:", "api/extra/common.txt:"))]
    assert found(report) == want


def test_human_output(cairn, copy_tree):
    tree = copy_tree(PINS / "proxy")
    p = cairn.run("pins", check=1, cwd=tree)
    lines = p.stdout.splitlines()
    assert lines[0] == ("Dockerfile:2:6: unpinned: nginx:1-alpine \u2014 tag without a digest: "
                        "nginx:1-alpine can be re-pushed with another image at any time, and a "
                        "rebuild (or a rollback that rebuilds) gets it")
    assert lines[1] == ("    fix: pin the digest: FROM nginx:1-alpine@sha256:<digest> "
                        "(`docker buildx imagetools inspect nginx:1-alpine` prints it)")
    assert lines[2].startswith("Dockerfile:3:24: unpinned: curl \u2014 apk add curl takes")
    assert lines[-1] == "6 unpinned dependencies in 2 files (3 files scanned)"
    assert len(lines) == 2 * 6 + 1
    assert p.stderr == ""


def test_clean_tree_exits_zero(cairn, copy_tree, tmp_path):
    tree = copy_tree(PINS / "web")
    p = cairn.run("pins", tree, check=0)
    assert p.stdout == "all dependencies pinned (1 file scanned)\n"
    assert cairn.json("pins", tree, check=0) == {"findings": [], "files_scanned": 1}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cairn.run("pins", empty, check=0).stdout == "all dependencies pinned (0 files scanned)\n"


def test_lockfile_makes_manifest_clean(cairn, copy_tree):
    tree = copy_tree(PINS / "frontend")
    report = cairn.json("pins", tree, check=1)
    assert "package.json" in [f["spec"] for f in report["findings"]]
    (tree / "yarn.lock").write_text("# yarn lockfile v1\n")
    assert cairn.json("pins", tree, check=0)["findings"] == []


def test_story_000_eventlet(cairn, tmp_path):
    app = tmp_path / "app"
    sp = app / ".venv/lib/python3.11/site-packages/eventlet-0.20.0.dist-info"
    sp.mkdir(parents=True)
    (app / ".venv/pyvenv.cfg").write_text("version = 3.11\n")
    (sp / "METADATA").write_text("Name: eventlet\nVersion: 0.20.0\n")
    (app / "requirements.txt").write_text("eventlet\ngreenlet==3.0.1\n")
    (app / "Dockerfile").write_text(f"FROM python:3.11-slim@{DIGEST}\n"
                                    "RUN pip install -r requirements.txt\n")
    report = cairn.json("pins", app, check=1)
    assert len(report["findings"]) == 1
    f = report["findings"][0]
    assert (f["file"], f["line"], f["col"], f["spec"]) == ("requirements.txt", 1, 1, "eventlet")
    assert "eventlet==0.20.0" in f["fix"]
    (app / "requirements.txt").write_text("eventlet==0.20.0\ngreenlet==3.0.1\n")
    assert cairn.json("pins", app, check=0)["files_scanned"] == 2


def test_story_001_nginx_tag(cairn, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM nginx:1-alpine\n")
    f = cairn.json("pins", app, check=1)["findings"][0]
    assert (f["spec"], f["ecosystem"]) == ("nginx:1-alpine", "docker")
    assert "docker buildx imagetools inspect nginx:1-alpine" in f["fix"]
    (app / "Dockerfile").write_text(f"FROM nginx:1-alpine@{DIGEST}\n")
    cairn.run("pins", app, check=0)


def test_usage_and_input_errors(cairn, tmp_path):
    p = cairn.run("pins", tmp_path / "nope", check=2)
    assert "no such directory" in p.stderr and p.stdout == ""
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert "not a directory" in cairn.run("pins", f, check=2).stderr
    err = cairn.json("pins", tmp_path / "nope", check=2)["error"]
    assert err["code"] == "input" and "no such directory" in err["message"]
    assert "one directory at most" in cairn.run("pins", tmp_path, tmp_path, check=2).stderr
    assert "see 'cairn pins --help'" in cairn.run("pins", "--bogus", check=2).stderr
    cairn.run("pins", "--exclude", check=2)


def test_help_is_a_manual_page(cairn):
    p = cairn.run("pins", "--help", check=0)
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]:
        assert f"\n{section}\n" in "\n" + p.stdout
    assert "--exclude NAME" in p.stdout
    assert "pins" in cairn.run("--help", check=0).stdout


def test_json_survives_bytes_that_are_not_utf8(cairn, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_bytes(b"ok==1.0\n")
    (app / "Dockerfile").write_bytes(b"\xef\xbb\xbfFROM nginx\r\nFROM caf\xe9:1\r\n")
    report = cairn.json("pins", app, check=1)
    assert found(report) == ["Dockerfile:1:6 nginx", "Dockerfile:2:6 caf\ufffd:1"]
    p = cairn.run("pins", app, check=1, input=b"")
    assert b"Dockerfile:2:6: unpinned: caf\xe9:1 " in p.stdout
