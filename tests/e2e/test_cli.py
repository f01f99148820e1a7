"""The binary itself: help, version, unknown commands."""


def test_help_lists_commands(cairn):
    p = cairn.run("--help", check=0)
    assert "usage: cairn" in p.stdout
    assert "exit status" in p.stdout


def test_unknown_command_suggests(cairn):
    p = cairn.run("bulid", check=2)
    assert "unknown command 'bulid'" in p.stderr


def test_version(cairn):
    p = cairn.run("--version", check=0)
    assert p.stdout.startswith("cairn ")


def test_read_commands_on_a_typod_state_say_nothing_is_there(cairn, tmp_path):
    """A typo'd --state (or CAIRN_STATE) must not create an empty state directory for the
    read commands: they say that nothing is there and leave the path absent. `releases` lists
    nothing (exit 0, the reason on stderr); a command that needs something there exits 2."""
    typo = tmp_path / "stat"
    for args in (["verify", "v1"], ["export", "v1", "-o", tmp_path / "x.tar.zst"],
                 ["status", "--app", "demo"], ["history", "--app", "demo"], ["job", "1"],
                 ["apps"], ["rm", "demo"], ["deploy", "--follow", "1"]):
        p = cairn.run(*args, "--state", typo, check=2)
        assert "nothing is there" in p.stderr and str(typo) in p.stderr, (args, p.stderr)
        assert not typo.exists(), args
        j = cairn.json(*args, "--state", typo, check=2)
        assert j["error"]["code"] == "not_found" and "nothing is there" in j["error"]["message"]
        assert not typo.exists(), args
    for args in (["releases"], ["verify"]):
        p = cairn.run(*args, "--state", typo, check=0)
        assert "nothing is there" in p.stderr and str(typo) in p.stderr, (args, p.stderr)
        assert not typo.exists(), args
    assert cairn.json("releases", "--state", typo)["releases"] == []
    p = cairn.run("releases", env={"CAIRN_STATE": str(typo)}, check=0)
    assert "from $CAIRN_STATE" in p.stderr and not typo.exists()
    # a directory that exists but holds no cairn state: said too, nothing written into it
    typo.mkdir()
    p = cairn.run("releases", "--state", typo, check=0)
    assert "no cairn state" in p.stderr and list(typo.iterdir()) == []


def test_readme_and_docs_cover_every_command_and_doc():
    """The README's command table names every command of `cairn --help`, its doc list every
    docs/*.md; no doc refers to a file outside the repository."""
    import re
    import subprocess
    from conftest import BIN, ROOT
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    cmds = [l.split()[0] for l in out.split("commands:\n")[1].split("\n\n")[0].splitlines()]
    assert len(cmds) > 15 and "job" in cmds and "rm" in cmds
    readme = (ROOT / "README.md").read_text()
    table = [l for l in readme.splitlines() if l.startswith("| `cairn ")]
    named = set(re.findall(r"`cairn ([a-z]+)", "\n".join(table)))
    assert set(cmds) <= named, set(cmds) - named
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    listed = set(re.findall(r"\(docs/([a-z0-9_-]+\.md)\)", readme))
    assert set(docs) <= listed, set(docs) - listed
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = p.read_text()
        assert not re.search(r"shared/(seeds|DESIGN)|/work/", text), p.name


def test_help_and_init_say_what_the_commands_do(cairn):
    """Stale sentences: init's comment on where build.command runs agrees with build --help
    (a scratch copy); history --help's promise of how long a job ran is kept (TOOK)."""
    assert "scratch copy" in cairn.run("build", "--help", check=0).stdout
    d = cairn.cwd / "py"
    d.mkdir()
    (d / "app.py").write_text("print(1)\n")
    cairn.run("init", cwd=d, check=0)
    yml = (d / "cairn.yml").read_text()
    build = yml.split("\nbuild:\n")[1].split("command:")[0]
    assert "scratch copy" in build and "in this directory before" not in build, build
    assert "how long it ran" in cairn.run("history", "--help", check=0).stdout
