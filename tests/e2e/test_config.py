"""`cairn check` and `cairn init` through the real binary: valid and invalid files, text and
--json output, a starter for each directory layout checked right after it is written."""
import json

import pytest

GOOD = """\
app: urlshort
run:
  command: ["python3", "app.py"]
  env: { LOG_LEVEL: info }
listen: 8080
instances: 2
health: { http: /healthz }
acceptance:
  - name: shorten
    request: { method: POST, path: /shorten, body: '{"url":"https://example.com"}' }
    expect:  { status: 200, body_contains: "/s/", max_latency: 300ms }
rollout:
  gates: { max_error_rate: 1%, max_p99: 500ms }
"""


def write(dir, text, name="cairn.yml"):
    p = dir / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_check_ok_text(cairn):
    write(cairn.cwd, GOOD)
    p = cairn.run("check", check=0)
    assert p.stdout == "cairn.yml: ok (app urlshort, 1 host × 2 instances, listen 127.0.0.1:8080)\n"
    assert p.stderr == ""


def test_check_json_resolved_with_defaults(cairn):
    write(cairn.cwd, GOOD)
    c = cairn.json("check")
    assert c["app"] == "urlshort"
    assert c["file"] == "cairn.yml"
    assert c["dir"] == str(cairn.cwd.resolve())
    assert c["run"]["command"] == ["python3", "app.py"]
    assert c["run"]["env"] == {"LOG_LEVEL": "info"}
    assert c["run"]["stop_timeout_ms"] == 10000
    assert c["run"]["stop_signal"] == "SIGTERM"
    assert c["listen"] == {"host": "127.0.0.1", "port": 8080}
    assert c["hosts"] == [{"name": "local", "ssh": None}]
    assert c["instances"] == 2
    assert c["build"] == {"command": [], "exclude": [".git", "__pycache__"], "pins": "require"}
    assert c["health"] == {"http": "/healthz", "interval_ms": 1000, "timeout_ms": 2000,
                           "healthy_after": 2, "start_deadline_ms": 60000}
    check = c["acceptance"][0]
    assert check["request"]["method"] == "POST"
    assert check["request"]["body"] == '{"url":"https://example.com"}'
    assert check["expect"] == {"status": 200, "body_contains": "/s/", "max_latency_ms": 300}
    assert c["rollout"] == {"parallel": 1, "bake_ms": 30000, "auto_rollback": True,
                            "unjudged": "fail", "gates": {"max_error_rate": 0.01, "max_p99_ms": 500,
                                      "max_p99_ratio": 0.0, "min_requests": 20}}


def test_check_with_c_from_elsewhere(cairn, tmp_path):
    p = write(tmp_path / "svc" / "deploy", GOOD.replace("instances: 2", "instances: 1") +
              "hosts: [local, {name: web1, ssh: deploy@10.0.0.5}]\n")
    r = cairn.run("check", "-c", p, check=0)
    assert r.stdout == f"{p}: ok (app urlshort, 2 hosts × 1 instance, listen 127.0.0.1:8080)\n"
    assert cairn.json("check", "--config", p)["dir"] == str(p.parent.resolve())


BAD = [
    # (text, line, col, message)
    ("app: x\nrun:\n  comand: [a]\nlisten: 1\n", 3, 3,
     'unknown key "comand" in run; did you mean "command"?'),
    ('app: x\nrun:\n  command: [a]\n  stop_timeout: "10"\nlisten: 1\n', 4, 17,
     'run.stop_timeout: "10" is not a duration; write it with a unit, e.g. 10s or 500ms'),
    ("app: x\nrun:\n  command: [a]\nlisten: 1\nrollout:\n  gates: {max_error_rate: 150%}\n",
     6, 27, 'rollout.gates.max_error_rate: "150%" is out of range; it must be between 0% and 100%'),
    ("app: x\nrun:\n  command: [a]\nlisten: 1\ninstances: 65\n", 5, 12,
     "instances: 65 is out of range; it must be between 1 and 64"),
    ("app: x\nrun:\n  command: [a]\nlisten: 1\nhosts: [web1]\n", 5, 9,
     'hosts[0]: "web1" is not a host; write local, or a mapping for a host reached over SSH, '
     "e.g. {name: web1, ssh: deploy@10.0.0.5}"),
    ("app: x\napp: y\n", 2, 1, 'duplicate key "app" (first at line 1)'),
    ("\n\napp: x\nrun:\n  command: [a]\n", 3, 1,
     'missing required key "listen"; e.g. listen: 8080 (the port of cairn\'s proxy on each host)'),
]


@pytest.mark.parametrize("text,line,col,message", BAD)
def test_check_errors_text(cairn, text, line, col, message):
    write(cairn.cwd, text)
    p = cairn.run("check", check=2)
    assert p.stdout == ""
    assert p.stderr == f"cairn.yml:{line}:{col}: error: {message}\n"


@pytest.mark.parametrize("text,line,col,message", BAD)
def test_check_errors_json(cairn, text, line, col, message):
    write(cairn.cwd, text)
    err = cairn.json("check", check=2)["error"]
    assert err == {"code": "input", "message": message, "file": "cairn.yml", "line": line,
                   "col": col}


def test_yaml_syntax_error_is_one_positioned_line(cairn):
    # libfyaml must print nothing itself: the only output is cairn's own line
    write(cairn.cwd, "app: x\nrun:\n\tcommand: [a]\nlisten: 1\n")
    p = cairn.run("check", check=2)
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("cairn.yml:3:1: error: YAML syntax error: ")
    assert "tab" in p.stderr

    write(cairn.cwd, 'app: x\nrun:\n  command: [a]\nlisten: "8080\n')
    p = cairn.run("check", check=2)
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("cairn.yml:4:9: error: YAML syntax error: ")


def test_binary_garbage_is_an_input_error(cairn):
    (cairn.cwd / "cairn.yml").write_bytes(b"app: x\nrun: \x00\xff\xfe\n")
    p = cairn.run("check", check=2)
    assert p.stderr == ("cairn.yml:2:6: error: contains a NUL byte; cairn.yml must be a UTF-8 "
                        "text file\n")


def test_no_config_here(cairn):
    p = cairn.run("check", check=2)
    assert ("no cairn.yml in this directory; run 'cairn init' to write one, or pass -c FILE"
            in p.stderr)
    err = cairn.json("check", check=2)["error"]
    assert err["code"] == "input"
    p = cairn.run("check", "-c", "nope.yml", check=2)
    assert "nope.yml: no such file" in p.stderr


def test_check_usage(cairn):
    p = cairn.run("check", "extra", check=2)
    assert "unexpected argument 'extra'" in p.stderr
    p = cairn.run("check", "--bogus", check=2)
    assert "see 'cairn check --help'" in p.stderr


@pytest.mark.parametrize("cmd", ["check", "init"])
def test_help(cairn, cmd):
    p = cairn.run(cmd, "--help", check=0)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
        assert section in p.stdout
    assert cmd in cairn.run("--help", check=0).stdout


# ---- init --------------------------------------------------------------------------------------

LAYOUTS = [
    # (dir name, files, app, run.command, build.command)
    ("shortener", {"app.py": "print('hi')\n", "requirements.txt": "flask==3.0.0\n"},
     "shortener", ["python3", "app.py"], []),
    ("worker", {"main.py": ""}, "worker", ["python3", "main.py"], []),
    ("Blog Site", {"manage.py": "", "blog/wsgi.py": "", "blog/__init__.py": ""},
     "blog-site", ["python3", "-m", "gunicorn", "blog.wsgi"], []),
    ("web", {"package.json": json.dumps({"scripts": {"start": "node server.js"}}),
             "package-lock.json": "{}"},
     "web", ["npm", "start"], ["npm", "ci"]),
    ("api", {"package.json": json.dumps({"main": "lib/api.js"})},
     "api", ["node", "lib/api.js"], []),
    ("rack", {"Gemfile": "gem 'puma'\n", "config.ru": "run App\n"},
     "rack", ["bundle", "exec", "puma", "-C", "config/puma.rb"], []),
    ("gosvc", {"go.mod": "module example.com/gosvc\n", "main.go": "package main\n"},
     "gosvc", ["./app"], ["go", "build", "-o", "app", "."]),
    ("rsvc", {"Cargo.toml": '[package]\nname = "rsvc-bin"\nversion = "0.1.0"\n'},
     "rsvc", ["./target/release/rsvc-bin"], ["cargo", "build", "--release"]),
    ("misc", {"README": "hello\n"}, "misc", ["./start"], []),
]


@pytest.mark.parametrize("name,files,app,run,build", LAYOUTS, ids=[l[0] for l in LAYOUTS])
def test_init_each_layout_then_check(cairn, tmp_path, name, files, app, run, build):
    d = tmp_path / name
    for f, text in files.items():
        write(d, text, f)
    p = cairn.run("init", d, check=0)
    cfg = d / "cairn.yml"
    assert p.stdout.startswith(f"wrote {cfg}\n")
    assert f"app:           {app}" in p.stdout
    assert "run.command:   " + json.dumps(run) in p.stdout
    text = cfg.read_text()
    assert "PORT" in text
    c = cairn.json("check", "-c", cfg)
    assert c["app"] == app
    assert c["run"]["command"] == run
    assert c["build"]["command"] == build
    assert c["listen"]["port"] == 8080
    # the same file, checked from inside the directory
    assert cairn.run("check", cwd=d, check=0).stdout.startswith(f"cairn.yml: ok (app {app}, ")


def test_init_in_cwd(cairn):
    write(cairn.cwd, "", "app.py")
    cairn.run("init", check=0)
    assert cairn.run("check", check=0).stdout.startswith("cairn.yml: ok (app work, ")


def test_init_refuses_to_overwrite(cairn):
    write(cairn.cwd, "", "app.py")
    mine = write(cairn.cwd, GOOD)
    p = cairn.run("init", check=2)
    assert "cairn.yml already exists; pass --force to overwrite it" in p.stderr
    assert mine.read_text() == GOOD
    err = cairn.json("init", check=2)["error"]
    assert err["code"] == "input" and "already exists" in err["message"]
    assert mine.read_text() == GOOD

    cairn.run("init", "--force", check=0)
    assert mine.read_text() != GOOD
    assert cairn.json("check")["run"]["command"] == ["python3", "app.py"]


def test_init_json(cairn):
    write(cairn.cwd, "module x\n", "go.mod")
    out = cairn.json("init")
    assert out == {"file": "./cairn.yml", "app": "work", "layout": "go", "found": "go.mod",
                   "run": ["./app"], "build": ["go", "build", "-o", "app", "."],
                   "health_http": None, "http_evidence": None}


def test_init_not_a_directory(cairn):
    p = cairn.run("init", "missing-dir", check=2)
    assert "missing-dir is not a directory" in p.stderr
    assert cairn.run("init", "a", "b", check=2).stderr.startswith("cairn init: error: ")
