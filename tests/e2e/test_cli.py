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
                 ["status", "--app", "demo"], ["history", "--app", "demo"]):
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
