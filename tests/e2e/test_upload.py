"""Object upload by digest: `cairn build` / `cairn import` against a remote controller (TCP +
bearer token) build into the CLI's own cache and upload only the objects the controller lacks;
the API routes underneath (missing list, PUT with digest check, release registration)."""
import hashlib
import http.client
import json
import os
import socket
from pathlib import Path

import pytest

from ctlutil import Controller

APP = """app: demo
build: { pins: warn }
run:
  command: ["python3", "app.py"]
listen: 8080
hosts: [local]
instances: 1
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Remote:
    """A TCP controller with a token, and a CLI environment that shares no state with it."""

    def __init__(self, cairn, tmp):
        cairn.state.mkdir(parents=True, exist_ok=True)
        self.cairn, self.tmp = cairn, tmp
        self.port = free_port()
        self.token_file = tmp / "token"
        self.ctl = Controller(cairn, tmp, args=["--listen", f"127.0.0.1:{self.port}",
                                                "--token-file", str(self.token_file)]).start()
        self.token = self.token_file.read_text().strip()
        self.cache = tmp / "cache"
        self.cli_state = tmp / "cli-state"
        self.env = {"CAIRN_STATE": str(self.cli_state), "XDG_CACHE_HOME": str(self.cache),
                    "CAIRN_ADDR": f"127.0.0.1:{self.port}",
                    "CAIRN_TOKEN_FILE": str(self.token_file)}

    def cli(self, *args, check=0, env=None, **kw):
        e = dict(self.env)
        e.update(env or {})
        return self.cairn.run(*args, check=check, env=e, **kw)

    def cli_json(self, *args, check=0, **kw):
        return json.loads(self.cli(*args, "--json", check=check, **kw).stdout)

    def http(self, method, path, body=None, token=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Authorization": f"Bearer {self.token}"} if token else {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            b = r.read()
            return r.status, (json.loads(b) if b.strip() else None)
        finally:
            c.close()

    def ctl_has(self, digest):
        return (self.cairn.state / "objects" / digest[:2] / digest[2:]).is_file()

    def cache_obj(self, digest):
        return self.cache / "cairn" / "objects" / digest[:2] / digest[2:]


@pytest.fixture
def remote(cairn, tmp_path):
    r = Remote(cairn, tmp_path)
    yield r
    r.ctl.stop()


def write_app(d: Path, files):
    d.mkdir(exist_ok=True)
    (d / "cairn.yml").write_text(APP)
    for name, data in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return d


FILES = {"app.py": b"print('v1')\n", "static/a.txt": b"alpha\n" * 1000,
         "static/b.bin": bytes(range(256)) * 4096, "static/copy.txt": b"alpha\n" * 1000}


def test_first_build_uploads_all_rebuild_uploads_only_the_changed_objects(remote, cairn):
    app = write_app(cairn.cwd / "demo", FILES)
    contents = [APP.encode()] + list(FILES.values())
    distinct = {sha(b) for b in contents}
    j = remote.cli_json("build", "--tag", "v1", cwd=app)
    up = j["upload"]
    assert up["objects"] == len(distinct) + 1  # + the manifest; copy.txt shares a.txt's object
    assert up["uploaded"] == up["objects"] and up["skipped"] == 0 and not up["existed"]
    assert up["uploaded_bytes"] > sum(len(b) for b in set(contents))
    assert all(remote.ctl_has(d) for d in distinct) and remote.ctl_has(j["id"][7:])
    # the controller recorded it with its tag; the CLI's own state was never touched
    st, a = remote.http("GET", "/v1/apps/demo")
    assert st == 200 and [(r["id"], r["tag"]) for r in a["releases"]] == [(j["id"], "v1")]
    assert not remote.cli_state.exists()
    ver = cairn.run("verify", j["id"], "--json", check=0)
    assert [r["ok"] for r in json.loads(ver.stdout)["releases"]] == [True]

    # one changed file: exactly its object and the new manifest go up
    new = b"print('v2')\n"
    (app / "app.py").write_bytes(new)
    p = remote.cli("build", cwd=app)
    assert "uploading 2 of %d objects" % up["objects"] in p.stderr
    assert "uploaded 2 objects" in p.stderr
    j2 = remote.cli_json("build", cwd=app)  # the same tree again: nothing to send
    assert j2["upload"]["uploaded"] == 0 and j2["upload"]["existed"] is True
    v2 = p.stdout.strip()
    assert v2 == j2["id"] != j["id"]
    assert remote.ctl_has(sha(new)) and remote.ctl_has(v2[7:])
    manifest = remote.cache_obj(v2[7:]).read_bytes()
    assert sha(manifest) == v2[7:]
    app3 = write_app(cairn.cwd / "demo3", dict(FILES, **{"app.py": b"print('v3')\n"}))
    j3 = remote.cli_json("build", "--tag", "v3", cwd=app3)
    u3 = j3["upload"]
    assert u3["uploaded"] == 2 and u3["skipped"] == u3["objects"] - 2
    assert u3["uploaded_bytes"] == len(b"print('v3')\n") + len(
        remote.cache_obj(j3["id"][7:]).read_bytes())
    # a tag names one release for good, remote as local
    p = remote.cli("build", "--tag", "v1", cwd=app, check=2)
    assert "tag 'v1' already names release" in p.stderr


def test_put_checks_the_digest_and_stores_nothing_on_mismatch(remote):
    good = b"hello objects\n"
    d = sha(good)
    st, b = remote.http("PUT", f"/v1/objects/{d}", b"hello 0bjects\n")
    assert st == 422 and b["error"]["code"] == "digest_mismatch" and d in b["error"]["message"]
    assert not remote.ctl_has(d)
    tmp = remote.cairn.state / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    st, b = remote.http("POST", "/v1/objects/missing", {"digests": [d]})
    assert st == 200 and b["missing"] == [d]
    st, b = remote.http("PUT", f"/v1/objects/{d}", good)
    assert st == 201 and b == {"digest": d, "size": len(good), "stored": True}
    assert remote.ctl_has(d)
    st, b = remote.http("PUT", f"/v1/objects/{d}", good)
    assert st == 200 and b["stored"] is False
    st, b = remote.http("POST", "/v1/objects/missing", {"digests": [d, sha(b"x")]})
    assert st == 200 and b["missing"] == [sha(b"x")]
    # bad names and bodies: JSON errors, nothing changes
    assert remote.http("PUT", "/v1/objects/" + d.upper(), good)[0] == 400
    assert remote.http("PUT", "/v1/objects/abc", good)[0] == 400
    assert remote.http("GET", f"/v1/objects/{d}")[0] == 405
    st, b = remote.http("POST", "/v1/objects/missing", {"digests": [d[:-1]]})
    assert st == 400 and b["error"]["code"] == "input" and "digests[0]" in b["error"]["message"]
    assert remote.http("POST", "/v1/objects/missing", {"digests": d})[0] == 400
    assert remote.http("POST", "/v1/objects/missing", {"digests": [], "x": 1})[0] == 400
    assert remote.http("POST", "/v1/objects/missing", b"[")[0] == 400
    st, b = remote.http("POST", "/v1/objects/missing", {"digests": [d] * 100001})
    assert st == 413 and "100000" in b["error"]["message"]
    st, b = remote.http("POST", "/v1/objects/missing", {"digests": [d] * 100000})
    assert st == 200 and b["missing"] == []


def test_corrupt_cache_object_is_refused_and_named(remote, cairn):
    app = write_app(cairn.cwd / "demo", FILES)
    remote.cli("build", cwd=app)
    d = sha(FILES["static/b.bin"])
    # the controller loses the object; the cache's copy has rotted on disk
    (remote.cairn.state / "objects" / d[:2] / d[2:]).unlink()
    obj = remote.cache_obj(d)
    obj.chmod(0o644)
    obj.write_bytes(b"rot" + FILES["static/b.bin"][3:])
    p = remote.cli("build", cwd=app, check=1)
    assert "local cache" in p.stderr and d in p.stderr and "static/b.bin" in p.stderr
    assert not remote.ctl_has(d)


def test_register_needs_every_object_and_names_the_first_missing(remote, cairn, tmp_path):
    app = write_app(cairn.cwd / "demo", FILES)
    # a release built on this machine only (no controller involved)
    local = tmp_path / "local"
    rid = cairn.run("build", "--state", local, cwd=app, check=0,
                    env={"CAIRN_ADDR": ""}).stdout.strip()
    hexid = rid[7:]
    objs = local / "objects"
    st, b = remote.http("POST", "/v1/releases", {"id": rid})
    assert st == 409 and b["error"]["code"] == "missing_object"
    assert b["error"]["digest"] == hexid and "manifest" in b["error"]["message"]
    manifest = (objs / hexid[:2] / hexid[2:]).read_bytes()
    assert remote.http("PUT", f"/v1/objects/{hexid}", manifest)[0] == 201
    m = json.loads(manifest)
    files = sorted({(f["digest"], f["path"]) for f in m["entries"] if f.get("digest")})
    held_back = sha(FILES["static/b.bin"])
    for dg, _ in files:
        if dg != held_back:
            data = (objs / dg[:2] / dg[2:]).read_bytes()
            assert remote.http("PUT", f"/v1/objects/{dg}", data)[0] in (200, 201)
    st, b = remote.http("POST", "/v1/releases", {"id": rid, "tag": "t1"})
    assert st == 409 and b["error"]["digest"] == held_back
    assert b["error"]["path"] == "static/b.bin" and held_back in b["error"]["message"]
    assert remote.http("GET", "/v1/apps/demo")[0] == 404  # nothing recorded
    assert remote.http("PUT", f"/v1/objects/{held_back}", FILES["static/b.bin"])[0] == 201
    st, b = remote.http("POST", "/v1/releases", {"id": hexid, "tag": "t1"})
    assert st == 201 and b["id"] == rid and b["tag"] == "t1" and b["existed"] is False
    assert b["app"] == "demo" and b["files"] == len(FILES) + 1
    st, b = remote.http("POST", "/v1/releases", {"id": rid, "tag": "t1"})
    assert st == 200 and b["existed"] is True
    assert remote.http("POST", "/v1/releases", {"id": rid, "tag": "a/b"})[0] == 400
    assert remote.http("POST", "/v1/releases", {"id": "sha256:" + "0" * 63})[0] == 400
    assert remote.http("POST", "/v1/releases", {"tag": "x"})[0] == 400
    # a manifest whose bytes are not a manifest
    junk = b"not a manifest"
    assert remote.http("PUT", f"/v1/objects/{sha(junk)}", junk)[0] == 201
    st, b = remote.http("POST", "/v1/releases", {"id": sha(junk)})
    assert st == 422


def test_unauthorised_requests_get_401_and_change_nothing(remote, cairn):
    data = b"secret-free bytes\n"
    d = sha(data)
    st, b = remote.http("PUT", f"/v1/objects/{d}", data, token=False)
    assert st == 401 and b["error"]["code"] == "unauthorized"
    assert not remote.ctl_has(d)
    assert remote.http("POST", "/v1/objects/missing", {"digests": [d]}, token=False)[0] == 401
    assert remote.http("POST", "/v1/releases", {"id": d}, token=False)[0] == 401
    app = write_app(cairn.cwd / "demo", FILES)
    bad = remote.tmp / "bad-token"
    bad.write_text("0" * len(remote.token) + "\n")
    p = remote.cli("build", cwd=app, check=1, env={"CAIRN_TOKEN_FILE": str(bad)})
    assert "401" in p.stderr and "bearer token" in p.stderr
    assert not any((remote.cairn.state / "objects").glob("??/*"))


def test_import_uploads_to_a_remote_controller(remote, cairn, tmp_path):
    app = write_app(cairn.cwd / "demo", FILES)
    local = tmp_path / "local"
    rid = cairn.run("build", "--tag", "rc1", "--state", local, cwd=app, check=0,
                    env={"CAIRN_ADDR": ""}).stdout.strip()
    archive = tmp_path / "demo.tar.zst"
    cairn.run("export", rid, "-o", archive, "--state", local, check=0)
    j = remote.cli_json("import", archive)
    assert j["id"] == rid and j["tag"] == "rc1" and j["existed"] is False
    assert j["upload"]["uploaded"] == j["upload"]["objects"] > 1
    st, a = remote.http("GET", "/v1/apps/demo")
    assert [(r["id"], r["tag"]) for r in a["releases"]] == [(rid, "rc1")]
    j = remote.cli_json("import", archive)
    assert j["existed"] is True and j["upload"]["uploaded"] == 0


def test_local_controller_build_is_unchanged(cairn, tmp_path):
    # no --addr: the build writes the state directory itself, no cache, no upload
    app = write_app(cairn.cwd / "demo", FILES)
    j = cairn.json("build", cwd=app, env={"CAIRN_ADDR": "", "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert "upload" not in j and not (tmp_path / "c").exists()
    assert (cairn.state / "objects" / j["id"][7:9] / j["id"][9:]).is_file()


def test_import_drops_a_tag_the_controller_gave_another_release(remote, cairn, tmp_path):
    local = tmp_path / "local"
    a1 = write_app(cairn.cwd / "one", FILES)
    rid = cairn.run("build", "--tag", "rc1", "--state", local, cwd=a1, check=0,
                    env={"CAIRN_ADDR": ""}).stdout.strip()
    archive = tmp_path / "one.tar.zst"
    cairn.run("export", rid, "-o", archive, "--state", local, check=0)
    a2 = write_app(cairn.cwd / "two", dict(FILES, **{"app.py": b"print('other')\n"}))
    other = remote.cli_json("build", "--tag", "rc1", cwd=a2)["id"]
    p = remote.cli("import", archive)
    assert "tag 'rc1' already names another release" in p.stderr
    assert "uploaded 2 objects" in p.stderr  # the rest is shared with the other release
    st, a = remote.http("GET", "/v1/apps/demo")
    assert sorted((r["id"], r["tag"]) for r in a["releases"]) == sorted(
        [(rid, None), (other, "rc1")])


def read_response(f):
    """(status, body) of one HTTP/1.1 response from a socket file; Content-Length framed."""
    status = int(f.readline().split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
    return status, f.read(length)


def test_body_limits_are_per_route(remote):
    big = os.urandom(3 * 1024 * 1024 + 17)  # over the 1 MiB limit of every JSON route
    d = sha(big)
    # one keep-alive connection: a GET, a big PUT, then a deploy body over 1 MiB is still 413
    c = http.client.HTTPConnection("127.0.0.1", remote.port, timeout=30)
    auth = {"Authorization": f"Bearer {remote.token}"}
    c.request("GET", "/metrics", headers=auth)
    assert c.getresponse().read() and True
    c.request("PUT", f"/v1/objects/{d}", body=big, headers=auth)
    r = c.getresponse()
    assert r.status == 201 and json.loads(r.read())["size"] == len(big)
    # only the headers: the answer must come from the Content-Length, before any body
    c.putrequest("POST", "/v1/apps/demo/deploys")
    c.putheader("Authorization", auth["Authorization"])
    c.putheader("Content-Length", str(1024 * 1024 + 10))
    c.endheaders()
    r = c.getresponse()
    assert r.status == 413
    c.close()
    assert remote.ctl_has(d)
    # pipelined: the big PUT's request line waits behind a small one's body
    small = b"small\n"
    big2 = big[::-1]
    s = socket.create_connection(("127.0.0.1", remote.port), timeout=30)
    head = "PUT /v1/objects/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n" \
           "Content-Length: {}\r\n\r\n"
    s.sendall(head.format(sha(small), remote.token, len(small)).encode() + small +
              head.format(sha(big2), remote.token, len(big2)).encode() + big2)
    f = s.makefile("rb")
    assert read_response(f)[0] == 201
    st, body = read_response(f)
    assert st == 201 and json.loads(body)["digest"] == sha(big2)
    # an object over 256 MiB is refused from its Content-Length, before its body
    s.sendall(head.format(d, remote.token, 256 * 1024 * 1024 + 1).encode())
    assert read_response(f)[0] == 413
    s.close()


def test_objects_bigger_than_a_request_go_up_in_parts(remote, cairn):
    # one request may carry 256 MiB: a 300 MiB file (a model, a fat binary) used to be refused
    # with 413; the CLI now sends objects over 16 MiB in parts and the controller hashes the
    # whole object at the last one
    import random
    rnd = random.Random(300)
    big = b"".join(rnd.randbytes(1 << 20) for _ in range(300))
    app = write_app(cairn.cwd / "big", {"app.py": b"print('big')\n", "model.bin": big})
    j = remote.cli_json("build", "--tag", "big", cwd=app)
    assert j["upload"]["uploaded_bytes"] > len(big), j
    d = sha(big)
    assert remote.ctl_has(d)
    assert (remote.cairn.state / "objects" / d[:2] / d[2:]).stat().st_size == len(big)
    assert not list((remote.cairn.state / "tmp").glob("part-*"))
    ver = cairn.run("verify", j["id"], "--json", check=0)
    assert [r["ok"] for r in json.loads(ver.stdout)["releases"]] == [True]


def test_part_uploads_resume_and_check_the_whole(remote):
    data = bytes(range(256)) * 20000
    d, size, cut = sha(data), len(data), 3 << 20

    def put(off, chunk, digest=d):
        return remote.http("PUT", f"/v1/objects/{digest}?offset={off}&size={size}", chunk)

    assert put(0, data[:cut]) == (202, {"digest": d, "received": cut, "size": size})
    st, b = put(cut + 1, data[cut + 1:])
    assert st == 409 and b["received"] == cut and b["error"]["code"] == "conflict", b
    assert not remote.ctl_has(d)
    assert put(cut, data[cut:]) == (201, {"digest": d, "size": size, "stored": True})
    assert remote.ctl_has(d)
    other = sha(b"not " + data)
    assert put(0, data[:cut], other)[0] == 202
    st, b = put(cut, data[cut:], other)
    assert st == 422 and b["error"]["code"] == "digest_mismatch", b
    assert not remote.ctl_has(other) and not list((remote.cairn.state / "tmp").glob("part-*"))
    for q in ("offset=0", "offset=1&size=1", "offset=0&size=5&x=1"):
        st, b = remote.http("PUT", f"/v1/objects/{d}?{q}", b"x")
        assert st == 400 and b["error"]["code"] == "input", (q, b)
