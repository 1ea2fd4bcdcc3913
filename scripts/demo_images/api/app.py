#!/usr/bin/env python3
"""pnr demo API: stdlib-only HTTP server on :8000 talking raw RESP to redis.

GET /        INCR hits, read greeting -> 200 JSON (503 if redis is unreachable)
GET /health  200 {"status":"ok"} when redis answers PING with +PONG, else 503
Env: REDIS_HOST (default "redis"), REDIS_PORT (default 6379).
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REDIS_HOST = os.environ.get("REDIS_HOST", "redis")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
PORT = 8000
GREETING = "Hello from redis via the pnr demo"
HOSTNAME = socket.gethostname()


class RedisError(Exception):
    pass


def redis(*args, timeout=2.0):
    """Send one command (as a RESP array) on a fresh connection and return the decoded reply."""
    payload = b"*%d\r\n" % len(args)
    for a in args:
        b = str(a).encode()
        payload += b"$%d\r\n%s\r\n" % (len(b), b)
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=timeout) as s:
        s.sendall(payload)
        f = s.makefile("rb")
        line = f.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)
            return data[:-2].decode()
        raise RedisError("unexpected reply %r" % line)


def log(msg):
    sys.stdout.write("%s api: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg))
    sys.stdout.flush()


def seed_greeting():
    """Set the greeting as soon as redis is reachable (retry in the background, never crash)."""
    while True:
        try:
            redis("SET", "greeting", GREETING)
            log("greeting stored in redis %s:%d" % (REDIS_HOST, REDIS_PORT))
            return
        except (OSError, RedisError) as e:
            log("redis not reachable yet (%s); retrying" % e)
            time.sleep(1)


class Handler(BaseHTTPRequestHandler):
    server_version = "pnr-demo-api/1"

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        try:
            if path == "/health":
                if redis("PING") == "PONG":
                    self.send_json(200, {"status": "ok"})
                else:
                    self.send_json(503, {"status": "unhealthy", "error": "unexpected PING reply"})
            elif path == "/":
                hits = redis("INCR", "hits")
                greeting = redis("GET", "greeting")
                if greeting is None:  # redis restarted (no persistence): seed again
                    redis("SET", "greeting", GREETING)
                    greeting = GREETING
                self.send_json(
                    200, {"message": "hello from the api", "hits": hits, "greeting": greeting, "served_by": HOSTNAME}
                )
            else:
                self.send_json(404, {"error": "not found"})
        except (OSError, RedisError, ValueError) as e:
            self.send_json(503, {"status": "unhealthy", "error": "redis: %s" % e})

    do_HEAD = do_GET

    def log_message(self, fmt, *args):  # one line per request, to stdout
        log("%s %s" % (self.address_string(), fmt % args))


def main():
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    # PID 1 in a container ignores SIGTERM unless handled: exit promptly on docker stop.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    threading.Thread(target=seed_greeting, daemon=True).start()
    log("listening on :%d (redis at %s:%d)" % (PORT, REDIS_HOST, REDIS_PORT))
    server.serve_forever()
    server.server_close()
    log("stopped")


if __name__ == "__main__":
    main()
