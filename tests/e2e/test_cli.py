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
