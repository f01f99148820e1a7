#!/usr/bin/python3
"""The dependency of story 004, reduced to its essence: a line-protocol message sink (think of
RabbitMQ). Clients send "MSG <id> <text>\\n" and get "OK <id>\\n" back once the message is stored.
A second delivery of an id is acknowledged again but stored once (consumers must be idempotent
when producers retry). "IDS\\n" answers "IDS <id>,<id>,...\\n" (sorted) and "DUPS <n>\\n".

    python3 dependency.py [--port 0]      prints "listening on PORT" when ready
"""
import argparse
import socketserver
import sys
import threading

lock = threading.Lock()
stored = {}      # id -> text
duplicates = 0


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.serve_lines()
        except OSError:
            pass  # a client that went away (reset) is the client's problem

    def serve_lines(self):
        global duplicates
        for raw in self.rfile:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("MSG "):
                parts = line.split(" ", 2)
                mid = int(parts[1])
                with lock:
                    if mid in stored:
                        duplicates += 1
                    else:
                        stored[mid] = parts[2] if len(parts) > 2 else ""
                self.wfile.write(b"OK %d\n" % mid)
            elif line == "IDS":
                with lock:
                    ids = ",".join(str(i) for i in sorted(stored))
                    dups = duplicates
                self.wfile.write(f"IDS {ids}\nDUPS {dups}\n".encode())
            else:
                self.wfile.write(b"ERR unknown command\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
