"""Builds release archives by hand (tarfile + the zstd command), valid or hostile, for the
import/export tests. The manifest is written exactly as src/release/manifest.c serialises it:
compact JSON, sorted keys, entries sorted by path (bytewise), non-ASCII left as UTF-8."""
import hashlib
import io
import json
import subprocess
import tarfile

MANIFEST = "cairn-release/manifest.json"
META = "cairn-release/meta.json"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class Release:
    """A release described by its entries: files (bytes), dirs and symlinks."""

    def __init__(self, app="demo"):
        self.app = app
        self.entries = {}  # path -> dict as in the manifest
        self.content = {}  # path -> bytes

    def dir(self, path, mode=0o755):
        self.entries[path] = {"path": path, "type": "dir", "mode": mode}
        return self

    def file(self, path, data, mode=0o644):
        self.entries[path] = {"path": path, "type": "file", "mode": mode, "size": len(data),
                              "digest": sha(data)}
        self.content[path] = data
        return self

    def link(self, path, target):
        self.entries[path] = {"path": path, "type": "link", "target": target}
        return self

    def manifest_obj(self):
        ents = [self.entries[p] for p in sorted(self.entries, key=lambda p: p.encode())]
        return {"version": 1, "app": self.app, "entries": ents,
                "run": {"command": ["python3", "app.py"], "env": {"LOG_LEVEL": "info"},
                        "stop_timeout_ms": 10000},
                "deps": []}

    def manifest(self):
        return canonical(self.manifest_obj())

    def id(self):
        return "sha256:" + sha(self.manifest())

    def members(self, meta=None):
        """The members of a correct archive: [(TarInfo, bytes or None)], in cairn's order."""
        out = [member(MANIFEST, data=self.manifest())]
        if meta is not None:
            out.append(member(META, data=canonical(meta)))
        for p in sorted(self.entries, key=lambda p: p.encode()):
            en = self.entries[p]
            name = "files/" + p
            if en["type"] == "dir":
                out.append(member(name, kind="dir", mode=en["mode"]))
            elif en["type"] == "link":
                out.append(member(name, kind="link", target=en["target"]))
            else:
                out.append(member(name, data=self.content[p], mode=en["mode"]))
        return out


def member(name, data=None, kind="file", mode=0o644, target="", size=None):
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = mode
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif kind == "link":
        ti.type = tarfile.SYMTYPE
        ti.linkname = target
        ti.mode = 0o777
    elif kind == "hardlink":
        ti.type = tarfile.LNKTYPE
        ti.linkname = target
    elif kind == "chr":
        ti.type = tarfile.CHRTYPE
        ti.devmajor, ti.devminor = 1, 3
    elif kind == "fifo":
        ti.type = tarfile.FIFOTYPE
    else:
        ti.type = tarfile.REGTYPE
        data = data or b""
        ti.size = len(data) if size is None else size
    return (ti, data)


def tar_bytes(members, fmt=tarfile.PAX_FORMAT):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None and ti.isreg() else None)
    return bio.getvalue()


def raw_members(members):
    """The tar bytes of members without the end-of-archive blocks (to append to by hand)."""
    out = b""
    for ti, data in members:
        out += ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if ti.isreg() and data:
            out += data + b"\0" * ((512 - len(data) % 512) % 512)
    return out


def zstd(raw):
    return subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout


def archive(members, compress=True):
    raw = tar_bytes(members)
    return zstd(raw) if compress else raw
