"""Release tags and names: a release keeps every tag it was given and a tag names one release
forever; nothing shaped like a release id can be a tag; a refused build stores nothing; app
names are checked on every path and nothing from the state reaches a terminal raw; import and
upload repair a corrupt object. (Issue 9 items 3 and 10, issue 10 defects 7-9.)"""
import hashlib
import json
import sqlite3

import pytest

import relarchive as ra
from test_build import build, make_app, objects
from test_upload import Remote, write_app, FILES, sha


def tags_of(cairn, rid):
    return [r["tags"] for r in cairn.json("releases")["releases"] if r["id"] == rid][0]


def resolved(cairn, ref):
    """The id a REF resolves to (through `cairn verify`, which resolves like every command)."""
    p = cairn.run("verify", ref, "--json")
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)["releases"][0]["id"]


@pytest.fixture
def remote(cairn, tmp_path):
    r = Remote(cairn, tmp_path)
    yield r
    r.ctl.stop()


# ---- issue 10 defect 9: a second tag does not remove the first ----------------------------

def test_a_second_tag_keeps_the_first(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r1 = build(cairn, a, "--tag", "A")
    r2 = build(cairn, a, "--tag", "B")  # nothing changed: the same release, a second tag
    assert r2["id"] == r1["id"] and r2["existed"]
    assert tags_of(cairn, r1["id"]) == ["A", "B"]
    assert resolved(cairn, "A") == r1["id"] and resolved(cairn, "B") == r1["id"]
    rel = [r for r in cairn.json("releases")["releases"] if r["id"] == r1["id"]][0]
    assert rel["tag"] == "A"  # the existing field: the first tag it was given
    text = cairn.run("releases", check=0).stdout
    assert "A,B" in text
    # giving a tag again is harmless; a tag never moves to another release
    assert build(cairn, a, "--tag", "A")["id"] == r1["id"]
    (a / "app.py").write_text("print('v2')\n")
    p = cairn.run("build", "--tag", "B", cwd=a, check=2)
    assert "tag 'B' already names" in p.stderr
    assert resolved(cairn, "B") == r1["id"]


# ---- issue 10 defect 8: a build refused for a taken tag stores nothing ----------------------

def test_a_build_refused_for_a_taken_tag_stores_nothing(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    build(cairn, a, "--tag", "v1")
    before = objects(cairn.state)
    (a / "app.py").write_text("print('changed')\n")
    p = cairn.run("build", "--tag", "v1", cwd=a, check=2)
    assert "tag 'v1' already names" in p.stderr and "nothing was stored" in p.stderr
    assert objects(cairn.state) == before
    assert not list((cairn.state / "tmp").iterdir())
    # the same content again, with a free tag: a new release, not "already stored"
    p = cairn.run("build", "--tag", "v2", cwd=a, check=0)
    assert "already stored" not in p.stderr and "built" in p.stderr


def test_a_build_refused_for_a_taken_tag_with_build_command_stores_nothing(cairn, tmp_path):
    a = make_app(tmp_path / "a", command='["python3", "-c", "open(\'gen.txt\',\'w\').write(\'g\')"]')
    build(cairn, a, "--tag", "v1")
    before = objects(cairn.state)
    (a / "app.py").write_text("print('changed')\n")
    cairn.run("build", "--tag", "v1", cwd=a, check=2)
    assert objects(cairn.state) == before
    # unchanged content under its own tag still builds ("already stored")
    (a / "app.py").write_text("print('hello')\n")
    assert build(cairn, a, "--tag", "v1")["existed"] is True


def test_a_remote_build_refused_for_a_taken_tag_uploads_nothing(remote, cairn):
    app = write_app(cairn.cwd / "demo", FILES)
    first = remote.cli_json("build", "--tag", "v1", cwd=app)["id"]
    ctl_objects = objects(remote.cairn.state)
    (app / "app.py").write_bytes(b"print('changed')\n")
    (app / "static" / "new.bin").write_bytes(b"new" * 100000)
    p = remote.cli("build", "--tag", "v1", cwd=app, check=2)
    assert "tag 'v1' already names" in p.stderr and "nothing was uploaded" in p.stderr
    assert objects(remote.cairn.state) == ctl_objects
    st, a = remote.http("GET", "/v1/apps/demo")
    assert [(r["id"], r["tags"]) for r in a["releases"]] == [(first, ["v1"])]
    # the same content under the same tag is fine (CI rebuilding an unchanged tree)
    (app / "app.py").write_bytes(FILES["app.py"])
    (app / "static" / "new.bin").unlink()
    assert remote.cli_json("build", "--tag", "v1", cwd=app)["id"] == first


# ---- issue 9 item 3: a tag can never impersonate a release id -------------------------------

ID_LIKE = ["deadbeef", "DEADBEEF", "0123456789ab", "1234", "a" * 64]


def test_id_shaped_tags_are_refused_by_build(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r = build(cairn, a)
    for tag in ID_LIKE + [r["id"][7:19], r["id"][7:]]:
        p = cairn.run("build", "--tag", tag, cwd=a, check=2)
        assert "may not look like a release id" in p.stderr, tag
    assert tags_of(cairn, r["id"]) == []
    # short hex and version-like names stay usable
    for tag in ["v1", "abc", "1.2.3", "release-2024"]:
        build(cairn, a, "--tag", tag)
    assert tags_of(cairn, r["id"]) == ["v1", "abc", "1.2.3", "release-2024"]


def test_id_shaped_tags_are_refused_by_import(cairn, tmp_path):
    real = ra.Release("demo").file("app.py", b"real\n")
    impostor = ra.Release("demo").file("app.py", b"impostor\n")
    p = tmp_path / "real.tar.zst"
    p.write_bytes(ra.archive(real.members()))
    cairn.run("import", p, check=0)
    for tag in [real.id(), real.id()[7:], real.id()[7:19]]:
        q = tmp_path / "impostor.tar.zst"
        q.write_bytes(ra.archive(impostor.members(meta={"tag": tag, "created_at": 1})))
        r = cairn.run("import", q, check=2)
        assert "may not look like a release id" in r.stderr, tag
    assert resolved(cairn, real.id()) == real.id()
    assert resolved(cairn, real.id()[7:19]) == real.id()
    # the same release imported again with a tag: it is added beside the others
    for tag, said in (("v1", "tag added"), ("v2", "tag added"), ("v2", "nothing changed")):
        p.write_bytes(ra.archive(real.members(meta={"tag": tag, "created_at": 1})))
        assert said in cairn.run("import", p, check=0).stdout
    assert tags_of(cairn, real.id()) == ["v1", "v2"]
    assert impostor.id() not in [r["id"] for r in cairn.json("releases")["releases"]]


def test_id_shaped_tags_are_refused_by_the_api(remote, cairn, tmp_path):
    app = write_app(cairn.cwd / "demo", FILES)
    local = tmp_path / "local"
    rid = cairn.run("build", "--state", local, cwd=app, check=0,
                    env={"CAIRN_ADDR": ""}).stdout.strip()
    for dg in [p.parent.name + p.name for p in (local / "objects").glob("??/*")]:
        data = (local / "objects" / dg[:2] / dg[2:]).read_bytes()
        assert remote.http("PUT", f"/v1/objects/{dg}", data)[0] in (200, 201)
    for tag in [rid[7:], rid[7:19], "cafe", "sha256:" + rid[7:]]:
        st, b = remote.http("POST", "/v1/releases", {"id": rid, "tag": tag})
        assert st == 400 and b["error"]["code"] == "input", (tag, b)
    assert remote.http("GET", "/v1/apps/demo")[0] == 404  # nothing recorded
    st, b = remote.http("POST", "/v1/releases", {"id": rid, "tag": "v1"})
    assert st == 201 and b["tag"] == "v1" and b["tags"] == ["v1"]
    st, b = remote.http("POST", "/v1/releases", {"id": rid, "tag": "ci-2"})
    assert st == 200 and b["tag"] == "ci-2" and b["tags"] == ["v1", "ci-2"]
    # a remote build of the same tree with a third tag keeps the other two
    j = remote.cli_json("build", "--tag", "ci-3", cwd=app)
    assert j["id"] == rid and j["tag"] == "ci-3"
    st, a = remote.http("GET", "/v1/apps/demo")
    assert a["releases"][0]["tags"] == ["v1", "ci-2", "ci-3"]


# ---- issue 9 item 10: app names are checked on every path, the terminal gets no raw bytes ---

@pytest.mark.parametrize("bad", ["../../evil", "\x1b[31mred", "", "Upper", "-dash"])
def test_the_api_refuses_a_manifest_with_a_bad_app_name(remote, cairn, bad):
    rel = ra.Release(bad).file("app.py", b"x\n")
    man = rel.manifest()
    data = b"x\n"
    assert remote.http("PUT", f"/v1/objects/{sha(data)}", data)[0] in (200, 201)
    assert remote.http("PUT", f"/v1/objects/{sha(man)}", man)[0] in (200, 201)
    st, b = remote.http("POST", "/v1/releases", {"id": rel.id()})
    assert st == 422 and "valid app name" in b["error"]["message"], b
    db = sqlite3.connect(str(cairn.state / "state.db"))
    assert db.execute("SELECT count(*) FROM releases").fetchone()[0] == 0
    db.close()


def test_releases_escapes_control_characters_from_the_state(cairn, tmp_path):
    a = make_app(tmp_path / "a")
    r = build(cairn, a, "--tag", "v1")
    # a state.db written before names were checked may hold anything
    db = sqlite3.connect(str(cairn.state / "state.db"))
    db.execute("UPDATE releases SET app = ? WHERE id = ?", ("\x1b[31mevil\x07", r["id"]))
    db.commit()
    db.close()
    out = cairn.run("releases", check=0).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mevil\\x07" in out
    out = cairn.run("verify", check=0).stdout
    assert "\x1b" not in out and "\\x1b[31mevil" in out


# ---- issue 10 defect 7: import and upload repair a corrupt object ---------------------------

def corrupt(path, data=b"rotten\n"):
    path.chmod(0o644)
    path.write_bytes(data)


def test_import_repairs_a_corrupt_object(cairn, tmp_path):
    rel = (ra.Release("demo").file("app.py", b"print('hello')\n")
           .dir("lib").file("lib/util.py", b"X = 1\n"))
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members(meta={"tag": "v1", "created_at": 1})))
    cairn.run("import", p, check=0)
    h = hashlib.sha256(b"X = 1\n").hexdigest()
    obj = cairn.state / "objects" / h[:2] / h[2:]
    for damage in (b"X = 666\n", b"X = 2\n"):  # another size, then the same size
        corrupt(obj, damage)
        assert cairn.json("verify", "v1", check=1)["releases"][0]["ok"] is False
        r = cairn.run("import", p, check=0)
        assert "repaired 1 corrupt object" in r.stdout and "nothing changed" not in r.stdout
        assert obj.read_bytes() == b"X = 1\n" and oct(obj.stat().st_mode & 0o777) == "0o444"
        assert cairn.json("verify", "v1")["releases"][0]["ok"] is True
    out = cairn.json("import", p)
    assert out["repaired_objects"] == 0 and out["existed"] is True
    # a corrupt manifest object is repaired too
    mh = rel.id()[7:]
    corrupt(cairn.state / "objects" / mh[:2] / mh[2:])
    assert cairn.json("import", p)["id"] == rel.id()
    assert cairn.json("verify", "v1")["releases"][0]["ok"] is True


def test_upload_repairs_a_corrupt_object(remote, cairn):
    data = b"object bytes\n" * 100
    d = sha(data)
    assert remote.http("PUT", f"/v1/objects/{d}", data)[0] == 201
    obj = remote.cairn.state / "objects" / d[:2] / d[2:]
    corrupt(obj)
    st, b = remote.http("PUT", f"/v1/objects/{d}", data)
    assert st == 201 and b["stored"] is True
    assert obj.read_bytes() == data
    assert remote.http("PUT", f"/v1/objects/{d}", data)[0] == 200  # intact: kept
    # in parts too
    corrupt(obj)
    half = len(data) // 2
    st, b = remote.http("PUT", f"/v1/objects/{d}?offset=0&size={len(data)}", data[:half])
    assert st == 202 and b["received"] == half, b
    st, b = remote.http("PUT", f"/v1/objects/{d}?offset={half}&size={len(data)}", data[half:])
    assert st == 201, b
    assert obj.read_bytes() == data


# ---- issue 10: tags in status and history, text and --json ---------------------------------

def test_status_and_history_show_tags(cairn, tmp_path):
    from ctlutil import APP_YML, Controller, has_test_hooks
    if not has_test_hooks():
        pytest.skip("needs a -Dtest_hooks=true build")
    d = cairn.cwd / "demo"
    d.mkdir()
    (d / "cairn.yml").write_text(APP_YML.format(app="demo", hosts="[local]"))
    (d / "app.py").write_text("print('v1')\n")
    rid = cairn.run("build", "--tag", "v1", cwd=d, check=0).stdout.strip()
    cairn.run("build", "--tag", "ci-7", cwd=d, check=0)
    c = Controller(cairn, tmp_path)
    try:
        c.start()
        cairn.run("deploy", "v1", "--wait", "--reason", "\x1b[2Jwiped", cwd=d, check=0)
        st = cairn.json("status", cwd=d)
        assert st["current"] == rid and st["current_tags"] == ["v1", "ci-7"]
        assert st["last_good_tags"] == ["v1", "ci-7"]
        assert [r["tags"] for r in st["releases"]] == [["v1", "ci-7"]]
        assert f"{rid} (v1,ci-7)" in cairn.run("status", cwd=d, check=0).stdout
        h = cairn.json("history", cwd=d)
        assert h["jobs"][0]["release"] == rid and h["jobs"][0]["release_tags"] == ["v1", "ci-7"]
        text = cairn.run("history", cwd=d, check=0).stdout
        assert f"{rid[7:19]} (v1,ci-7)" in text
        # the RELEASE column is as wide as its widest "id (tags)": CREATED stays aligned
        lines = text.splitlines()
        assert lines[1].index("20") == lines[0].index("CREATED"), text
        # the reason is the user's text: shown, but it cannot drive the terminal
        assert "\x1b" not in text and "\\x1b[2Jwiped" in text
        assert h["jobs"][0]["reason"] == "\x1b[2Jwiped"
    finally:
        c.stop()


def test_agent_upload_repairs_a_corrupt_object(tmp_path):
    from agentlib import Agent, processes_of, wait_for
    from conftest import BIN
    a = Agent(BIN, tmp_path / "astate")
    a.state.mkdir()
    try:
        a.start()
        data = b"agent object\n" * 1000
        d = sha(data)
        assert a.call("PUT", f"/v1/objects/{d}", raw=data)[0] == 201
        obj = a.state / "objects" / d[:2] / d[2:]
        corrupt(obj)
        st, b = a.call("PUT", f"/v1/objects/{d}", raw=data)
        assert st == 201 and b["added"] is True, b
        assert obj.read_bytes() == data
        st, b = a.call("PUT", f"/v1/objects/{d}", raw=data)
        assert st == 200 and b["added"] is False, b
    finally:
        a.cleanup()
    wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


def test_rollback_to_an_id_deploys_that_id_whatever_a_tag_says(cairn, tmp_path):
    """The issue's attack: a tag shaped like the real release's id named an impostor, and
    `rollback --to <real id>` deployed the impostor. Tags like that are refused now; even one
    written into the database behind cairn's back is never read for an id-shaped REF."""
    from ctlutil import Controller, has_test_hooks, make_app
    if not has_test_hooks():
        pytest.skip("needs a -Dtest_hooks=true build")
    real = make_app(cairn, version="1")
    impostor = make_app(cairn, version="2")
    db = sqlite3.connect(str(cairn.state / "state.db"))
    for tag in (real[7:19], real[7:], real):
        db.execute("INSERT INTO release_tags (app, tag, id, created_at) VALUES ('demo', ?, ?, 1)",
                   (tag, impostor))
    db.commit()
    db.close()
    c = Controller(cairn, tmp_path)
    try:
        c.start()
        cairn.run("deploy", impostor, "--wait", "--app", "demo", check=0)
        for ref in (real[7:19], real[7:], real):
            j = cairn.json("rollback", "--to", ref, "--wait", "--app", "demo")
            assert j["release"] == real and j["state"] == "succeeded", (ref, j)
            cairn.run("deploy", impostor, "--wait", "--app", "demo", check=0)
    finally:
        c.stop()
