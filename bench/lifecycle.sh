#!/bin/sh
# The life cycle under many clients (numbers, not pass/fail): CLIENTS API clients (default 16), each
# looping create -> start -> wait -> rm for SECS seconds (default 60), against a private release
# berthd. Prints cycles/s, errors, timeouts (a request without an answer in 120 s), p50 and p95.
set -eu
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-16}
SECS=${SECS:-60}
. bench/berthd.sh
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
python3 - "$SOCK" "$CLIENTS" "$SECS" <<'PY'
import http.client, json, socket, statistics, sys, threading, time

sock, clients, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

class Conn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=120)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(sock)

def call(method, path, body=None):
    c = Conn()
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        c.request(method, "/v1.44" + path, body=data, headers=headers)
        r = c.getresponse()
        out = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {out[:200]!r}")
        return json.loads(out) if out.strip() else None
    finally:
        c.close()

cycles, errors, timeouts = [], [], [0]
lock = threading.Lock()
deadline = time.monotonic() + secs

def worker():
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            cid = call("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})["Id"]
            call("POST", f"/containers/{cid}/start")
            call("POST", f"/containers/{cid}/wait")
            call("DELETE", f"/containers/{cid}")
            with lock:
                cycles.append((time.perf_counter() - t) * 1000)
        except socket.timeout:
            with lock:
                timeouts[0] += 1
        except Exception as e:
            with lock:
                errors.append(str(e))

threads = [threading.Thread(target=worker) for _ in range(clients)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.monotonic() - t0
cycles.sort()
p = lambda q: cycles[min(len(cycles) - 1, int(q * len(cycles)))] if cycles else float("nan")
print(f"{clients} clients x {secs:.0f} s create/start/wait/rm: {len(cycles)} cycles, {len(cycles) / wall:.1f} cycles/s, "
      f"{len(errors)} errors, {timeouts[0]} timeouts, p50 {p(0.5):.0f} ms, p95 {p(0.95):.0f} ms")
for e in errors[:5]:
    print("  error:", e)
PY
