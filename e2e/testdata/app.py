"""A small WSGI app for turnout's tests and bench with real app servers.

It answers every request with the id the client gave (query `id=`) and the
worker's pid, after a little real work (hashing the body). Every POST it
applies is appended, one id a line, to the file named by $APP_APPLIED_LOG, so
that a test can check that no POST was lost or applied twice. One write of a
short line with O_APPEND is atomic across the server's processes.

GET /healthz answers {"ok": true, "booted": N}, N the time (ns since the
epoch) at which this copy of the app was imported: a test tells from it that
the app it reaches was loaded after a restart began.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

APPLIED_LOG = os.environ["APP_APPLIED_LOG"]

BOOTED = time.time_ns()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        out = json.dumps({"ok": True, "booted": BOOTED})
        return _reply(start_response, "200 OK", out.encode() + b"\n", "application/json")
    method = environ["REQUEST_METHOD"]
    ids = parse_qs(environ.get("QUERY_STRING", "")).get("id")
    if not ids or not ids[0]:
        return _reply(start_response, "400 Bad Request", b"want ?id=\n", "text/plain")
    rid = ids[0]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    digest = hashlib.sha256(body + rid.encode())
    for _ in range(200):
        digest = hashlib.sha256(digest.digest())
    if method == "POST":
        fd = os.open(APPLIED_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (rid + "\n").encode())
        finally:
            os.close(fd)
    out = json.dumps({"id": rid, "method": method, "pid": os.getpid(),
                      "len": len(body), "digest": digest.hexdigest()[:16]})
    return _reply(start_response, "200 OK", out.encode() + b"\n", "application/json")


def _reply(start_response, status, body, ctype):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
