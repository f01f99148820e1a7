"""cairn export / cairn import: round trips, deterministic bytes, and one refusal per kind of
hostile archive. A refused archive must change nothing: the state directory's objects/ and
tmp/ and its releases table are compared before and after every refusal."""
import hashlib
import io
import json
import os
import pty
import sqlite3
import subprocess
import tarfile

import pytest

import relarchive as ra
from conftest import BIN


def snapshot(state):
    """Everything an import could leave behind: object and temp files, release rows."""
    files = []
    for sub in ("objects", "tmp"):
        root = state / sub
        for dirpath, _dirs, names in os.walk(root):
            for n in names:
                files.append(os.path.relpath(os.path.join(dirpath, n), state))
    rows = []
    db = state / "state.db"
    if db.exists():
        con = sqlite3.connect(str(db))
        # the first tag each release was given (a release keeps all of them: release_tags)
        rows = con.execute("SELECT id, app, (SELECT tag FROM release_tags t WHERE t.id = r.id "
                           "ORDER BY t.rowid LIMIT 1) FROM releases r ORDER BY id").fetchall()
        con.close()
    return sorted(files), rows


def release_rows(state):
    return snapshot(state)[1]


def app_release(app="demo"):
    return (ra.Release(app)
            .file("app.py", b"print('hello')\n")
            .dir("lib")
            .file("lib/util.py", b"X = 1\n", mode=0o755)
            .link("current", "lib/util.py"))


@pytest.fixture
def seeded(cairn, tmp_path):
    """A state directory that already holds one release (so 'nothing changed' is meaningful)."""
    base = ra.Release("base").file("README", b"base release\n")
    p = tmp_path / "base.tar.zst"
    p.write_bytes(ra.archive(base.members(meta={"tag": "v0", "created_at": 1})))
    cairn.run("import", p, check=0)
    return cairn


def refused(cairn, tmp_path, data, name_in_message, code=2):
    """Imports `data`, expects a refusal naming `name_in_message` and no change to the state."""
    before = snapshot(cairn.state)
    p = tmp_path / "hostile.tar.zst"
    p.write_bytes(data)
    r = cairn.run("import", p)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert name_in_message in r.stderr, r.stderr
    assert "archive refused" in r.stderr or code != 2, r.stderr
    assert snapshot(cairn.state) == before
    return r.stderr


# ---- valid archives ---------------------------------------------------------------------

def test_python_made_archive_imports_with_the_manifest_digest_as_id(cairn, tmp_path):
    rel = app_release()
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members(meta={"tag": "v1", "created_at": 1700000000})))
    out = cairn.json("import", p)
    assert out["id"] == "sha256:" + hashlib.sha256(rel.manifest()).hexdigest()
    assert out["app"] == "demo" and out["files"] == 2 and out["tag"] == "v1"
    assert out["existed"] is False and out["new_objects"] == 2
    assert out["bytes"] == len(b"print('hello')\n") + len(b"X = 1\n")
    rows = release_rows(cairn.state)
    assert rows == [(out["id"], "demo", "v1")]
    con = sqlite3.connect(str(cairn.state / "state.db"))
    assert con.execute("SELECT created_at, n_files FROM releases").fetchone() == (1700000000, 2)
    con.close()
    # every file and the manifest are stored under their digests
    for data in (rel.manifest(), b"print('hello')\n", b"X = 1\n"):
        h = hashlib.sha256(data).hexdigest()
        assert (cairn.state / "objects" / h[:2] / h[2:]).read_bytes() == data


def test_text_output_and_idempotent_reimport(cairn, tmp_path):
    rel = app_release()
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members()))
    r = cairn.run("import", p, check=0)
    assert r.stdout.startswith(f"imported {rel.id()} (demo, 2 files")
    before = snapshot(cairn.state)
    r = cairn.run("import", p, check=0)
    assert "already stored" in r.stdout
    assert snapshot(cairn.state) == before
    assert cairn.json("import", p)["existed"] is True


def test_uncompressed_tar_and_stdin_are_accepted(cairn, tmp_path):
    rel = app_release()
    raw = ra.archive(rel.members(), compress=False)
    r = cairn.run("import", "-", input=raw, check=0)
    assert rel.id().encode() in r.stdout


def test_round_trip_export_is_deterministic_and_identical_across_machines(cairn, tmp_path):
    # a long, non-ASCII path needs pax headers: they must be deterministic too
    long = "lib/" + "é" * 40 + "-" + "x" * 120 + ".py"
    rel = app_release().file(long, b"long = True\n").file("empty", b"", mode=0o600)
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members(meta={"tag": "v1", "created_at": 42})))
    cairn.run("import", p, check=0)
    one = tmp_path / "one.tar.zst"
    two = tmp_path / "two.tar.zst"
    cairn.run("export", "v1", "-o", one, check=0)
    r = cairn.run("export", rel.id()[:15], check=0, input=b"")  # stdout is a pipe here
    two.write_bytes(r.stdout)
    assert one.read_bytes() == two.read_bytes()
    # a second machine: import cairn's export, export again: the same bytes
    other = tmp_path / "other"
    env = {"CAIRN_STATE": str(other)}
    r = cairn.run("import", one, env=env, check=0)
    assert rel.id() in r.stdout and "tag v1" in r.stdout
    three = tmp_path / "three.tar.zst"
    cairn.run("export", "v1", "-o", three, env=env, check=0)
    assert three.read_bytes() == one.read_bytes()
    # and the archive is what docs/archive.md says
    raw = subprocess.run(["zstd", "-dc", str(one)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = t.getmembers()
        names = [m.name for m in members]
        assert names[0] == ra.MANIFEST and names[1] == ra.META
        assert t.extractfile(members[0]).read() == rel.manifest()
        assert json.loads(t.extractfile(members[1]).read()) == {"tag": "v1", "created_at": 42}
        assert names[2:] == ["files/" + p for p in sorted(rel.entries, key=str.encode)]
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
        by = {m.name: m for m in members}
        assert by["files/current"].issym() and by["files/current"].linkname == "lib/util.py"
        assert by["files/lib"].isdir() and by["files/lib"].mode == 0o755
        assert by["files/lib/util.py"].mode == 0o755 and by["files/empty"].mode == 0o600


def test_export_json_and_usage_errors(cairn, tmp_path):
    rel = app_release()
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members()))
    cairn.run("import", p, check=0)
    out = cairn.json("export", rel.id(), "-o", tmp_path / "x.tar.zst")
    assert out["id"] == rel.id() and out["files"] == 2 and out["archive_bytes"] > 0
    assert out["archive_bytes"] == (tmp_path / "x.tar.zst").stat().st_size
    r = cairn.run("export", rel.id(), "--json", check=2)
    assert "-o FILE" in r.stderr
    cairn.run("export", check=2)
    cairn.run("import", check=2)
    r = cairn.run("import", tmp_path / "nope.tar.zst", check=2)
    assert "nope.tar.zst" in r.stderr
    r = cairn.run("export", "no-such-tag", "-o", tmp_path / "y.tar.zst", check=2)
    assert "no release matches 'no-such-tag'" in r.stderr
    assert not (tmp_path / "y.tar.zst").exists()
    for cmd in ("export", "import"):
        h = cairn.run(cmd, "--help", check=0).stdout
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
            assert section in h


def test_export_refuses_to_write_binary_to_a_terminal(cairn, tmp_path):
    rel = app_release()
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members()))
    cairn.run("import", p, check=0)
    master, slave = pty.openpty()
    try:
        r = subprocess.run([BIN, "export", rel.id()], stdout=slave, stderr=subprocess.PIPE,
                           env=dict(os.environ, CAIRN_STATE=str(cairn.state)), timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2
    assert b"terminal" in r.stderr


def test_tag_collision_imports_untagged_with_a_warning(seeded, tmp_path):
    cairn = seeded
    rel = ra.Release("base").file("README", b"another base release\n")
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members(meta={"tag": "v0", "created_at": 5})))
    r = cairn.run("import", p, check=0)
    assert "tag 'v0' already names another release" in r.stderr
    rows = dict((i, t) for i, _a, t in release_rows(cairn.state))
    assert rows[rel.id()] is None
    out = cairn.json("import", p)
    assert out["existed"] is True and out["tag"] is None
    # the tag names "base"'s first release still
    assert list(rows.values()).count("v0") == 1


def test_export_fails_on_a_corrupt_object_naming_the_file(cairn, tmp_path):
    rel = app_release()
    p = tmp_path / "a.tar.zst"
    p.write_bytes(ra.archive(rel.members()))
    cairn.run("import", p, check=0)
    h = hashlib.sha256(b"X = 1\n").hexdigest()
    obj = cairn.state / "objects" / h[:2] / h[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"X = 2\n")  # same size, other bytes
    out = tmp_path / "out.tar.zst"
    r = cairn.run("export", rel.id(), "-o", out, check=1)
    assert "files/lib/util.py" in r.stderr and "corrupt" in r.stderr
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".cairn-export")]
    # to a pipe: exit 1 and the corrupt bytes are not in what was written
    r = cairn.run("export", rel.id(), input=b"")
    assert r.returncode == 1
    raw = subprocess.run(["zstd", "-dc"], input=r.stdout, capture_output=True).stdout
    assert b"X = 2" not in raw
    obj.write_bytes(b"X = 1\nmore")  # another size
    r = cairn.run("export", rel.id(), "-o", out, check=1)
    assert "files/lib/util.py" in r.stderr
    obj.unlink()
    r = cairn.run("export", rel.id(), "-o", out, check=1)
    assert "files/lib/util.py" in r.stderr and "missing" in r.stderr


def test_json_error_for_a_refused_archive(seeded, tmp_path):
    rel = app_release()
    m = rel.members()
    m.append(ra.member("files/extra", data=b"x"))
    p = tmp_path / "h.tar.zst"
    p.write_bytes(ra.archive(m))
    r = seeded.run("import", p, "--json", check=2)
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "input" and "files/extra" in err["message"]


# ---- hostile archives: one per attack ----------------------------------------------------

def test_refuses_absolute_path(seeded, tmp_path):
    m = app_release().members()
    m.append(ra.member("/tmp/evil", data=b"x"))
    refused(seeded, tmp_path, ra.archive(m), '"/tmp/evil" is an absolute path')


def test_refuses_dotdot_path(seeded, tmp_path):
    m = app_release().members()
    m.append(ra.member("../x", data=b"x"))
    refused(seeded, tmp_path, ra.archive(m), '"../x" has a ".." component')


def test_refuses_dotdot_inside_files(seeded, tmp_path):
    m = app_release().members()
    m.insert(2, ra.member("files/../../x", data=b"x"))
    refused(seeded, tmp_path, ra.archive(m), '"files/../../x"')


def test_refuses_symlink_to_etc_passwd(seeded, tmp_path):
    rel = app_release().link("passwd", "/etc/passwd")
    refused(seeded, tmp_path, ra.archive(rel.members()), '"passwd" points outside the release')


def test_refuses_archive_symlink_escaping_even_if_manifest_is_benign(seeded, tmp_path):
    rel = app_release()
    m = rel.members()
    i = [ti.name for ti, _ in m].index("files/current")
    m[i] = ra.member("files/current", kind="link", target="/etc/passwd")
    refused(seeded, tmp_path, ra.archive(m), '"files/current" is a symlink pointing outside')


def test_refuses_symlink_dotdot_dotdot(seeded, tmp_path):
    rel = app_release().link("a", "../..")
    refused(seeded, tmp_path, ra.archive(rel.members()), '"a" points outside the release')


def test_refuses_symlink_through_another_symlink(seeded, tmp_path):
    rel = app_release().link("a", ".").link("b", "a/..")
    refused(seeded, tmp_path, ra.archive(rel.members()), '"b" resolves through another symlink')


def test_refuses_symlink_differing_from_manifest(seeded, tmp_path):
    m = app_release().members()
    i = [ti.name for ti, _ in m].index("files/current")
    m[i] = ra.member("files/current", kind="link", target="app.py")
    refused(seeded, tmp_path, ra.archive(m),
            '"files/current" points to "app.py" in the archive, to "lib/util.py"')


def test_refuses_hardlink(seeded, tmp_path):
    rel = app_release().file("h", b"print('hello')\n")
    m = rel.members()
    i = [ti.name for ti, _ in m].index("files/h")
    m[i] = ra.member("files/h", kind="hardlink", target="files/app.py")
    refused(seeded, tmp_path, ra.archive(m), '"files/h" is a hard link')


def test_refuses_char_device(seeded, tmp_path):
    rel = app_release().file("null", b"")
    m = rel.members()
    i = [ti.name for ti, _ in m].index("files/null")
    m[i] = ra.member("files/null", kind="chr")
    refused(seeded, tmp_path, ra.archive(m), '"files/null" is a device file')


def test_refuses_fifo(seeded, tmp_path):
    rel = app_release().file("pipe", b"")
    m = rel.members()
    i = [ti.name for ti, _ in m].index("files/pipe")
    m[i] = ra.member("files/pipe", kind="fifo")
    refused(seeded, tmp_path, ra.archive(m), '"files/pipe" is a fifo')


def test_refuses_size_mismatch(seeded, tmp_path):
    m = app_release().members()
    i = [ti.name for ti, _ in m].index("files/app.py")
    m[i] = ra.member("files/app.py", data=b"print('hello!')\n")
    refused(seeded, tmp_path, ra.archive(m), '"files/app.py" has 16 bytes in the archive, 15')


def test_refuses_digest_mismatch(seeded, tmp_path):
    m = app_release().members()
    i = [ti.name for ti, _ in m].index("files/app.py")
    m[i] = ra.member("files/app.py", data=b"print('HELLO')\n")
    refused(seeded, tmp_path, ra.archive(m), '"files/app.py": content hashes to')


def test_refuses_entry_not_in_manifest(seeded, tmp_path):
    m = app_release().members()
    m.append(ra.member("files/extra.py", data=b"import os\n"))
    refused(seeded, tmp_path, ra.archive(m), '"files/extra.py" is not in the release\'s manifest')


def test_refuses_missing_entry(seeded, tmp_path):
    m = [x for x in app_release().members() if x[0].name != "files/lib/util.py"]
    refused(seeded, tmp_path, ra.archive(m), '"files/lib/util.py" is in the manifest but missing')


def test_refuses_duplicate_entry(seeded, tmp_path):
    m = app_release().members()
    i = [ti.name for ti, _ in m].index("files/app.py")
    m.insert(i, ra.member("files/app.py", data=b"print('hello')\n"))
    refused(seeded, tmp_path, ra.archive(m), '"files/app.py" appears twice')


def test_refuses_manifest_not_first(seeded, tmp_path):
    m = app_release().members()
    m[0], m[1] = m[1], m[0]
    refused(seeded, tmp_path, ra.archive(m), "the first entry must be cairn-release/manifest.json")


def test_refuses_missing_manifest(seeded, tmp_path):
    m = app_release().members()[1:]
    refused(seeded, tmp_path, ra.archive(m), "the first entry must be cairn-release/manifest.json")


def test_refuses_invalid_and_non_canonical_manifest(seeded, tmp_path):
    rel = app_release()
    m = rel.members()
    m[0] = ra.member(ra.MANIFEST, data=b"{not json")
    refused(seeded, tmp_path, ra.archive(m), "cairn-release/manifest.json: manifest is not valid")
    pretty = json.dumps(rel.manifest_obj(), sort_keys=True, indent=1).encode()
    m[0] = ra.member(ra.MANIFEST, data=pretty)
    refused(seeded, tmp_path, ra.archive(m), "manifest.json is valid but not in canonical form")
    unsorted = rel.manifest_obj()
    e = unsorted["entries"]
    e[0], e[1] = e[1], e[0]
    m[0] = ra.member(ra.MANIFEST, data=ra.canonical(unsorted))
    refused(seeded, tmp_path, ra.archive(m), "not sorted or repeated")


def test_refuses_oversized_manifest_header(seeded, tmp_path):
    ti = tarfile.TarInfo(ra.MANIFEST)
    ti.size = 300 * 1024 * 1024
    raw = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + b"{" + b"\0" * 511
    refused(seeded, tmp_path, ra.zstd(raw), "cairn-release/manifest.json is larger than")


def test_refuses_truncated_archive(seeded, tmp_path):
    # incompressible content, so the zstd stream has many blocks and is cut mid-file
    big = os.urandom(1 << 20)
    rel = app_release().file("big.bin", big)
    data = ra.archive(rel.members())
    refused(seeded, tmp_path, data[: len(data) * 2 // 3], '"files/big.bin"')


def test_refuses_truncated_tar_without_compression(seeded, tmp_path):
    rel = app_release().file("big.bin", b"z" * 100000)
    raw = ra.archive(rel.members(), compress=False)
    cut = raw.index(b"z" * 512) + 50000
    refused(seeded, tmp_path, raw[:cut], '"files/big.bin": the archive is truncated')


def test_refuses_garbage(seeded, tmp_path):
    refused(seeded, tmp_path, os.urandom(4096), "not a tar.zst archive written by 'cairn export'")
    refused(seeded, tmp_path, b"", "not a tar.zst archive written by 'cairn export'")


def test_refuses_gzip(seeded, tmp_path):
    import gzip
    raw = ra.archive(app_release().members(), compress=False)
    refused(seeded, tmp_path, gzip.compress(raw), "not a tar.zst archive written by 'cairn export'")


def test_refuses_mode_mismatch(seeded, tmp_path):
    m = app_release().members()
    i = [ti.name for ti, _ in m].index("files/app.py")
    m[i][0].mode = 0o4755
    refused(seeded, tmp_path, ra.archive(m), '"files/app.py" has mode 4755 in the archive, 0644')


def test_refuses_type_mismatch(seeded, tmp_path):
    m = app_release().members()
    i = [ti.name for ti, _ in m].index("files/lib")
    m[i] = ra.member("files/lib", data=b"")
    refused(seeded, tmp_path, ra.archive(m),
            '"files/lib" is a regular file in the archive but a directory in the manifest')


def test_refuses_entries_outside_files(seeded, tmp_path):
    m = app_release().members()
    m.append(ra.member("etc/cron.d/evil", data=b"x"))
    refused(seeded, tmp_path, ra.archive(m), '"etc/cron.d/evil" is outside files/')
    m = app_release().members()
    m.append(ra.member("cairn-release/extra", data=b"x"))
    refused(seeded, tmp_path, ra.archive(m), '"cairn-release/extra" is not an entry cairn writes')


def test_refuses_zip_bomb(seeded, tmp_path):
    """The manifest says 10 bytes; the archive holds 256 MiB of zeros (a few KiB compressed).
    It is refused at the header, before any of it is decompressed."""
    rel = app_release().file("small", b"0123456789")
    m = rel.members()
    i = [ti.name for ti, _ in m].index("files/small")
    head = ra.raw_members(m[:i])
    ti = tarfile.TarInfo("files/small")
    ti.size = 256 << 20
    ti.mode = 0o644
    zst = tmp_path / "bomb.tar.zst"
    with open(zst, "wb") as out:
        z = subprocess.Popen(["zstd", "-q", "-c"], stdin=subprocess.PIPE, stdout=out)
        z.stdin.write(head + ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        zeros = b"\0" * (1 << 20)
        for _ in range(256):
            z.stdin.write(zeros)
        z.stdin.write(b"\0" * 1024)
        z.stdin.close()
        assert z.wait() == 0
    assert zst.stat().st_size < 1 << 20
    refused(seeded, tmp_path, zst.read_bytes(), '"files/small" has 268435456 bytes in the archive')


def test_refuses_absurd_pax_header(seeded, tmp_path):
    m = app_release().members()
    m[1][0].pax_headers = {"comment": "x" * (4 << 20)}
    refused(seeded, tmp_path, ra.archive(m), "cairn-release/manifest.json")


def test_refuses_bad_meta(seeded, tmp_path):
    rel = app_release()
    m = rel.members()
    m.insert(1, ra.member(ra.META, data=b"[1,2]"))
    refused(seeded, tmp_path, ra.archive(m), "cairn-release/meta.json is not a JSON object")
    m = rel.members(meta={"tag": "bad\ntag"})
    refused(seeded, tmp_path, ra.archive(m), "cairn-release/meta.json")
    m = rel.members()
    m.append(ra.member(ra.META, data=b"{}"))
    refused(seeded, tmp_path, ra.archive(m), "cairn-release/meta.json must come right after")


def test_refuses_archive_expanding_beyond_what_the_manifest_accounts_for(seeded, tmp_path):
    """Each pax header stays under libarchive's own 1 MiB bound, but together they expand far
    past the manifest's content plus slack: reading stops at the limit."""
    m = app_release().members()
    for ti, _data in m[1:]:
        ti.pax_headers = {"comment": "x" * 900000}
    err = refused(seeded, tmp_path, ra.archive(m), "the archive expands to more than")
    assert '"files/' in err
