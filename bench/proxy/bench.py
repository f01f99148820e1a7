"""bench/proxy: cairn's HTTP reverse proxy vs nginx proxy_pass and haproxy (and no proxy), wrk
keep-alive load against one fast static upstream (nginx `return 200`), 1 and 2 workers each;
then one bulk TCP stream direct vs `cairn proxy --mode tcp` vs socat. Orchestration only: every
process measured is C. Prints the tables and writes bench/out/proxy.json."""
import argparse
import json
import os
import resource
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "build", "cairn"))
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench", "out"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {deadline}s")


class Procs:
    def __init__(self):
        self.ps = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, stdout=kw.pop("stdout", subprocess.DEVNULL),
                             stderr=subprocess.DEVNULL, **kw)
        self.ps.append(p)
        return p

    def stop(self, p):
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.ps.remove(p)

    def stop_all(self):
        for p in list(self.ps):
            self.stop(p)


def nginx_conf(w, name, workers, body):
    d = os.path.join(w, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  keepalive_requests 100000000;
{body}
}}
""")
    return conf


def unit_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]


def wrk(port, secs, conns, threads):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=secs + 30).stdout
    if not re.search(r"^\s+99%\s+[\d.]+(us|ms|s)", out, re.M):
        raise RuntimeError(f"wrk against port {port} measured nothing:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # the latency distribution lines only ("75.99%" in the thread stats also ends in 99%)
    p50 = unit_us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = unit_us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_us": p50, "p99_us": p99,
            "errors": (int(errs.group(1)) if errs else 0), "socket_errors": sock.group(1) if sock else ""}


def http_cases(a, w, procs, up_port):
    rows = []
    have_haproxy = shutil.which("haproxy")
    for workers in (1, 2):
        cases = [("direct", None)]
        cases.append(("cairn", lambda port, n=workers: procs.start(
            [BIN, "proxy", "--mode", "http", "--listen", f"127.0.0.1:{port}", "--upstream",
             f"127.0.0.1:{up_port}", "--threads", str(n)])))
        cases.append(("nginx", lambda port, n=workers: procs.start(
            ["nginx", "-c", nginx_conf(w, f"px{n}", n, f"""
  upstream up {{ server 127.0.0.1:{up_port}; keepalive 256; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://up;
    proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""), "-e", "/dev/null"])))
        if have_haproxy:
            def hap(port, n=workers):
                cfg = os.path.join(w, f"haproxy{n}.cfg")
                with open(cfg, "w") as f:
                    f.write(f"""global
  nbthread {n}
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:{up_port}
""")
                return procs.start(["haproxy", "-f", cfg, "-db"])
            cases.append(("haproxy", hap))
        for name, start in cases:
            port = up_port
            p = None
            if start:
                port = free_port()
                p = start(port)
                wait_port(port, p)
            print(f"bench/proxy: {name}, {workers} worker(s)", file=sys.stderr)
            wrk(port, 1, a.conns, a.wrk_threads)  # warm-up: pools filled, caches warm
            r = wrk(port, a.seconds, a.conns, a.wrk_threads)
            lat = wrk(port, a.seconds, 1, 1)  # one connection: latency without queueing
            r.update(case=name, workers=workers, lat_p50_us=lat["p50_us"],
                     lat_p99_us=lat["p99_us"])
            rows.append(r)
            if p:
                procs.stop(p)
    return rows


def cpu_s(pid):
    """CPU seconds of a process so far: its threads and its reaped children (socat's forks)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def tcp_cases(a, w, procs):
    bulk, floor = os.path.join(w, "bulk"), os.path.join(w, "splice-floor")
    for src, exe, extra in (("bulk.c", bulk, []), ("splice-floor.c", floor, ["-pthread"])):
        subprocess.run(["cc", "-O2", *extra, "-o", exe,
                        os.path.join(ROOT, "bench", "proxy", src)], check=True)
    srv = procs.start([bulk, "serve", str(a.bytes)], stdout=subprocess.PIPE, text=True)
    up_port = int(srv.stdout.readline())
    rows = []
    cases = [("direct", None),
             ("splice floor", lambda port: procs.start([floor, str(port), str(up_port)])),
             ("cairn --mode tcp", lambda port: procs.start(
                 [BIN, "proxy", "--mode", "tcp", "--listen", f"127.0.0.1:{port}", "--upstream",
                  f"127.0.0.1:{up_port}"]))]
    if shutil.which("socat"):
        cases.append(("socat", lambda port: procs.start(
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
             f"TCP:127.0.0.1:{up_port}"])))
    for name, start in cases:
        port, p = up_port, None
        if start:
            port = free_port()
            p = start(port)
            wait_port(port, p)
        best, cpu = 0.0, None
        for _ in range(a.runs):
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            s0, p0 = cpu_s(srv.pid), cpu_s(p.pid) if p else 0.0
            out = subprocess.run([bulk, "get", "127.0.0.1", str(port)], capture_output=True,
                                 text=True, timeout=120).stdout.split()
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            got, secs = int(out[0]), float(out[1])
            if got != a.bytes:
                raise RuntimeError(f"{name}: {got} of {a.bytes} bytes")
            if got / secs / 1e9 > best:
                best = got / secs / 1e9
                used = {"sender": cpu_s(srv.pid) - s0,
                        "proxy": (cpu_s(p.pid) - p0) if p else 0.0,
                        "receiver": (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)}
                cpu = {k: v / (got / 1e9) for k, v in used.items()}
        rows.append({"case": name, "gb_s": best, "cpu_s_per_gb": cpu})
        if p:
            procs.stop(p)
    procs.stop(srv)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--bytes", type=int, default=2 << 30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    a, _ = ap.parse_known_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"bench/proxy: {tool} not installed (bench/install-deps)", file=sys.stderr)
            return 1
    if not os.access(BIN, os.X_OK):
        print(f"bench/proxy: no {BIN}; run make first", file=sys.stderr)
        return 1
    w = tempfile.mkdtemp(prefix="cairn-bench-proxy.")
    procs = Procs()
    try:
        up_port = free_port()
        up = procs.start(["nginx", "-c", nginx_conf(w, "up", 1, f"""
  server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 "ok"; }} }}"""),
                          "-e", "/dev/null"])
        wait_port(up_port, up)
        rows = http_cases(a, w, procs, up_port)
        trows = tcp_cases(a, w, procs)
    finally:
        procs.stop_all()
        shutil.rmtree(w, ignore_errors=True)

    print(f"bench proxy: wrk -t{a.wrk_threads} -c{a.conns} -d{a.seconds}s keep-alive, "
          f"upstream nginx return 200 (1 worker), {os.cpu_count()} CPUs shared by all")
    print("| proxy | workers | req/s | p50 us | p99 us | vs nginx | 1-conn p50 us | 1-conn p99 us"
          " | added p50 us | added p99 us | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    by = {(r["case"], r["workers"]): r for r in rows}
    for r in rows:
        ng = by.get(("nginx", r["workers"]))
        d = by[("direct", r["workers"])]
        ratio = f"{r['rps'] / ng['rps']:.2f}" if ng and r["case"] != "direct" else ""
        added = f"{r['lat_p99_us'] - d['lat_p99_us']:.0f}" if r["case"] != "direct" else ""
        added50 = f"{r['lat_p50_us'] - d['lat_p50_us']:.0f}" if r["case"] != "direct" else ""
        print(f"| {r['case']} | {r['workers']} | {r['rps']:.0f} | {r['p50_us']:.0f} | "
              f"{r['p99_us']:.0f} | {ratio} | {r['lat_p50_us']:.0f} | {r['lat_p99_us']:.0f} | "
              f"{added50} | {added} | {r['errors']} {r['socket_errors']} |")
    print("(req/s, p50, p99: -c%d; 1-conn: one keep-alive connection, so the latency a request"
          " pays without queueing; added p99 = 1-conn p99 minus direct's)" % a.conns)
    print(f"\nTCP: one bulk stream of {a.bytes >> 20} MiB, best of {a.runs}")
    print("| path | GB/s | vs direct | vs splice floor | CPU s/GB sender | proxy | receiver "
          "| total | wall floor on %d CPUs |" % os.cpu_count())
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    direct = trows[0]["gb_s"]
    sfloor = next(t["gb_s"] for t in trows if t["case"] == "splice floor")
    for t in trows:
        c = t["cpu_s_per_gb"]
        tot = sum(c.values())
        # all the CPU the path burns, spread perfectly over every CPU: no proxy can beat this
        print(f"| {t['case']} | {t['gb_s']:.2f} | {t['gb_s'] / direct:.2f} | "
              f"{t['gb_s'] / sfloor:.2f} | {c['sender']:.2f} | {c['proxy']:.2f} | "
              f"{c['receiver']:.2f} | {tot:.2f} | {os.cpu_count() / tot:.2f} GB/s |")
    print("(splice floor: bench/proxy/splice-floor.c, a thread per direction polling and "
          "splicing through a pipe, the ceiling of any splice "
          "proxy here; wall floor = CPUs / total CPU s per GB, the best any path with that CPU "
          "cost can do even with perfect overlap)")
    goals = []
    for n in (1, 2):
        c, ng, d = by[("cairn", n)], by[("nginx", n)], by[("direct", n)]
        goals.append((f"req/s >= 1.0x nginx ({n} worker{'s' if n > 1 else ''})",
                      c["rps"] >= ng["rps"], f"{c['rps'] / ng['rps']:.2f}x"))
        added = c["lat_p99_us"] - d["lat_p99_us"]
        goals.append((f"added p99 < 50 us ({n} worker{'s' if n > 1 else ''})", added < 50,
                      f"{added:.0f} us"))
    ct = next(t for t in trows if t["case"].startswith("cairn"))
    goals.append(("TCP >= 0.9x direct", ct["gb_s"] >= 0.9 * direct, f"{ct['gb_s'] / direct:.2f}x"))
    goals.append(("TCP >= 0.95x splice floor", ct["gb_s"] >= 0.95 * sfloor,
                  f"{ct['gb_s'] / sfloor:.2f}x"))
    print()
    for g, ok, v in goals:
        print(f"goal {g}: {'met' if ok else 'missed'} ({v})")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "proxy.json"), "w") as f:
        json.dump({"http": rows, "tcp": trows,
                   "goals": [{"goal": g, "met": ok, "value": v} for g, ok, v in goals]}, f,
                  indent=1)
    return 1 if a.check and not all(ok for _, ok, _ in goals) else 0


if __name__ == "__main__":
    sys.exit(main())
