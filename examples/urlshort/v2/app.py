"""urlshort: a small URL shortener (Python 3 standard library only).

Listens on 127.0.0.1:$PORT and keeps its data in $CAIRN_DATA/urls.json (default ./data).
  GET  /healthz    200 "ok"
  POST /shorten    {"url": "https://..."} -> 200 {"short": "/s/<code>", "url": "..."}
  GET  /s/<code>   302 to the stored URL
  GET  /stats      JSON counts
Several instances may share one data directory: writes are atomic (temp file + rename) and
serialised by a thread lock and an flock on $CAIRN_DATA/urls.lock.
"""
import contextlib
import fcntl
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

VERSION = "1.1.0"

MAX_BODY = 64 * 1024        # bytes accepted in a POST body
MAX_URL = 2048              # characters in a URL to shorten
CODE_LEN = 7
CODE_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
REQUEST_TIMEOUT = 10        # seconds a client may take to send its request


def now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def log(msg):
    print(f"{now()} {msg}", flush=True)


class BadRequest(Exception):
    pass


def validate_url(url):
    if not isinstance(url, str) or not url:
        raise BadRequest('"url" must be a non-empty string')
    if len(url) > MAX_URL:
        raise BadRequest(f'"url" is longer than {MAX_URL} characters')
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise BadRequest('"url" must not contain spaces or control characters')
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise BadRequest(f'"url" is not a valid URL: {e}') from None
    if parts.scheme not in ("http", "https"):
        raise BadRequest('"url" must start with http:// or https://')
    if not parts.hostname:
        raise BadRequest('"url" has no host name')
    return url


class Store:
    """The URL table, read from disk on every request so that instances sharing the directory
    see each other's writes."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.path = os.path.join(directory, "urls.json")
        self.lock_path = os.path.join(directory, "urls.lock")
        self.lock = threading.Lock()
        with self.locked():
            if not os.path.exists(self.path):
                self._write({"urls": {}, "hits": {}})

    @contextlib.contextmanager
    def locked(self):
        with self.lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _read(self):
        with open(self.path, encoding="utf-8") as f:
            return json.loads(f)

    def _write(self, data):
        fd, tmp = tempfile.mkstemp(prefix=".urls.", suffix=".tmp", dir=self.dir)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def shorten(self, url):
        with self.locked():
            data = self._read()
            for code, known in data["urls"].items():
                if known == url:
                    return code
            for _ in range(32):
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LEN))
                if code not in data["urls"]:
                    break
            else:
                raise RuntimeError("no free short code after 32 tries")
            data["urls"][code] = url
            self._write(data)
            return code

    def resolve(self, code):
        with self.locked():
            data = self._read()
            url = data["urls"].get(code)
            if url is not None:
                data["hits"][code] = data["hits"].get(code, 0) + 1
                self._write(data)
            return url

    def stats(self):
        with self.locked():
            data = self._read()
        return {"urls": len(data["urls"]), "redirects": sum(data["hits"].values())}


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_status = {}

    def add(self, status):
        key = f"{status // 100}xx"
        with self.lock:
            self.by_status[key] = self.by_status.get(key, 0) + 1

    def snapshot(self):
        with self.lock:
            return dict(sorted(self.by_status.items()))


class Handler(BaseHTTPRequestHandler):
    server_version = f"urlshort/{VERSION}"
    timeout = REQUEST_TIMEOUT

    # -- plumbing -----------------------------------------------------------------------------
    def send(self, status, body, ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body) + "\n"
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self._status = status

    def error(self, status, message, headers=()):
        self.send(status, {"error": message}, headers=headers)

    def dispatch(self, method):
        self._status = 0
        start = time.monotonic()
        try:
            self.route(method)
        except Exception:
            sys.stderr.write(f"{now()} error: {method} {self.path}\n{traceback.format_exc()}")
            sys.stderr.flush()
            if self._status == 0:
                self.error(500, "internal server error")
        finally:
            ms = (time.monotonic() - start) * 1000
            self.server.counters.add(self._status or 500)
            log(f'{self.client_address[0]} "{method} {self.path}" {self._status} {ms:.1f}ms')

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def log_request(self, code="-", size="-"):
        pass  # dispatch() logs one line per request

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{now()} {self.address_string()} {fmt % args}\n")

    # -- routes -------------------------------------------------------------------------------
    def route(self, method):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            if method != "GET":
                return self.error(405, "use GET", headers=[("Allow", "GET")])
            return self.send(200, "ok\n", ctype="text/plain; charset=utf-8")
        if path == "/shorten":
            if method != "POST":
                return self.error(405, "use POST", headers=[("Allow", "POST")])
            return self.shorten()
        if path == "/stats":
            if method != "GET":
                return self.error(405, "use GET", headers=[("Allow", "GET")])
            stats = self.server.store.stats()
            stats.update(version=VERSION, requests=self.server.counters.snapshot())
            return self.send(200, stats)
        if path.startswith("/s/"):
            if method != "GET":
                return self.error(405, "use GET", headers=[("Allow", "GET")])
            code = path[3:]
            if not CODE_RE.match(code):
                return self.error(404, "no such short URL")
            url = self.server.store.resolve(code)
            if url is None:
                return self.error(404, "no such short URL")
            return self.send(302, {"url": url}, headers=[("Location", url)])
        return self.error(404, "not found")

    def shorten(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self.error(411, "a Content-Length header is required")
        if int(length) > MAX_BODY:
            return self.error(413, f"body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return self.error(400, 'body must be JSON: {"url": "https://..."}')
        if not isinstance(body, dict) or "url" not in body:
            return self.error(400, 'body must be a JSON object with "url"')
        try:
            url = validate_url(body["url"])
        except BadRequest as e:
            return self.error(400, str(e))
        code = self.server.store.shorten(url)
        return self.send(200, {"short": f"/s/{code}", "url": url})


class Server(ThreadingHTTPServer):
    daemon_threads = False   # server_close() waits for requests in flight
    block_on_close = True


def main():
    port_s = os.environ.get("PORT")
    if not port_s:
        sys.exit("urlshort: PORT is not set; run it as `PORT=8080 python3 app.py`")
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        sys.exit(f"urlshort: PORT must be a number from 1 to 65535, not {port_s!r}")
    port = int(port_s)
    data_dir = os.environ.get("CAIRN_DATA") or "./data"
    try:
        store = Store(data_dir)
    except OSError as e:
        sys.exit(f"urlshort: cannot use data directory {data_dir!r}: {e.strerror}")
    try:
        server = Server(("127.0.0.1", port), Handler)
    except OSError as e:
        sys.exit(f"urlshort: cannot listen on 127.0.0.1:{port}: {e.strerror}")
    server.store = store
    server.counters = Counters()

    stopping = threading.Event()

    def on_signal(signum, _frame):
        if stopping.is_set():
            return
        stopping.set()
        log(f"{signal.Signals(signum).name}: finishing requests in flight, then exiting")
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"urlshort {VERSION} listening on 127.0.0.1:{port} "
          f"release={os.environ.get('CAIRN_RELEASE', '-')} "
          f"instance={os.environ.get('CAIRN_INSTANCE', '-')}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()  # joins the request threads
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
