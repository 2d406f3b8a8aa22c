"""A local HTTP server speaking enough of the Hugging Face Hub's file API for
``huggingface_hub`` (repo info, tree listing, resolve with HEAD/GET/Range).

Tests point ``HF_ENDPOINT`` at it, so the real huggingface_hub client downloads
from it. Faults can be injected: cut a file off midway, stall midway (once, or every time, on any
route), or answer everything with one error status.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Revision:
    commit: str
    files: dict[str, bytes]


@dataclass
class HubState:
    repos: dict[str, dict[str, Revision]] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # filename -> bytes sent before closing
    cut_times: int = 0  # how many GETs are cut (0 = none)
    # a cut GET ends with a reset (RST, as a proxy that drops a connection), not a close: huggingface_hub resumes
    # a closed download after a second's wait, five times over, and gives up on a reset one at once
    cut_by_reset: bool = False
    down: bool = False  # answer 503 to everything
    answer_all: int | None = None  # answer every request with this status and no Hub error code (a bare proxy)
    delay_s: float = 0.0  # wait before sending each file body (a slow download)
    stall_after: dict[str, int] = field(default_factory=dict)  # filename -> bytes sent before going silent (once)
    # route -> bytes of the body sent before going silent, on every request until `release`: "revision"
    # (repo and model info: the revision's commit and files), "tree" (the file listing), or a file name
    stall_every: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)  # ends every stall (the connection closes)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_revision(self, repo_id: str, revision: str, directory: Path, names: list[str] | None = None) -> str:
        files = {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir())
                 if p.is_file() and (names is None or p.name in names)}
        commit = hashlib.sha1(f"{repo_id}@{revision}".encode() + b"".join(files.values())).hexdigest()
        self.repos.setdefault(repo_id, {})[revision] = Revision(commit, files)
        return commit

    def find(self, repo_id: str, ref: str) -> Revision | None:
        revisions = self.repos.get(repo_id, {})
        if ref in revisions:
            return revisions[ref]
        return next((r for r in revisions.values() if r.commit == ref), None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head_only: bool = False,
              route: str = ""):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head_only:
            return
        stall = self.state.stall_every.get(route)
        if stall is not None:
            self._stall(body[:stall])
            return
        self.wfile.write(body)

    def _stall(self, sent: bytes) -> None:
        """Send ``sent``, then stay silent with the connection open until the test releases it."""
        self.wfile.write(sent)
        self.wfile.flush()
        self.state.release.wait(120)
        self.close_connection = True

    def _error(self, code: int, error_code: str, head_only: bool = False):
        body = json.dumps({"error": error_code}).encode()
        self._send(code, body, {"X-Error-Code": error_code, "X-Error-Message": error_code,
                                "Content-Type": "application/json"}, head_only)

    def do_HEAD(self):
        self._route(head_only=True)

    def do_GET(self):
        self._route(head_only=False)

    def _route(self, head_only: bool):
        url = urlparse(self.path)
        path = unquote(url.path)
        with self.state.lock:
            self.state.requests.append(f"{self.command} {path}")
        if self.state.down:
            return self._send(503, b"down", head_only=head_only)
        if self.state.answer_all is not None:
            return self._send(self.state.answer_all, b"no", head_only=head_only)
        # model repos, and dataset repos (what `datasets` asks for: the same routes under api/datasets, datasets/)
        m = re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/revision/(.+)", path)
        if m:
            return self._repo_info(m.group(1), m.group(2), head_only)
        m = re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if m:
            return self._tree(m.group(1), m.group(2), head_only, (m.group(3) or "").strip("/"))
        m = re.fullmatch(r"/(?:datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self._resolve(m.group(1), m.group(2), m.group(3), head_only)
        self._error(404, "EntryNotFound", head_only)

    def _lookup(self, repo_id: str, ref: str, head_only: bool) -> Revision | None:
        if repo_id not in self.state.repos:
            self._error(404, "RepoNotFound", head_only)
            return None
        rev = self.state.find(repo_id, ref)
        if rev is None:
            self._error(404, "RevisionNotFound", head_only)
        return rev

    def _repo_info(self, repo_id: str, ref: str, head_only: bool):
        rev = self._lookup(repo_id, ref, head_only)
        if rev:
            body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": rev.commit, "private": False,
                               "siblings": [{"rfilename": f} for f in rev.files]}).encode()
            self._send(200, body, {"Content-Type": "application/json"}, head_only, route="revision")

    def _tree(self, repo_id: str, ref: str, head_only: bool, under: str = ""):
        rev = self._lookup(repo_id, ref, head_only)
        if rev:
            entries = [{"type": "file", "path": name, "size": len(data),
                        "oid": hashlib.sha1(data).hexdigest()} for name, data in rev.files.items()
                       if not under or name.startswith(under + "/")]
            folders = {name.split("/")[0] for name in rev.files if "/" in name and not under}
            entries += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()}
                        for f in sorted(folders)]
            self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head_only,
                       route="tree")

    def _resolve(self, repo_id: str, ref: str, filename: str, head_only: bool):
        rev = self._lookup(repo_id, ref, head_only)
        if not rev:
            return
        data = rev.files.get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", head_only)
        etag = f'"{hashlib.sha1(data).hexdigest()}"'
        headers = {"X-Repo-Commit": rev.commit, "ETag": etag, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start = 0
        rng = self.headers.get("Range")
        if rng and not head_only:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
        body = data[start:]
        if head_only:
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        if self.state.delay_s:
            import time

            time.sleep(self.state.delay_s)
        cut = None
        with self.state.lock:
            if filename in self.state.cut_after and self.state.cut_times > 0:
                self.state.cut_times -= 1
                cut = self.state.cut_after[filename]
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(206 if start else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with self.state.lock:
            stall = self.state.stall_after.pop(filename, None)  # one stall: the resume is answered
        if stall is None:
            stall = self.state.stall_every.get(filename)
        if stall is not None:
            self._stall(body[:stall])  # silent, connection open: a stalled download
            return
        if cut is not None:
            import socket
            import struct

            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            if self.state.cut_by_reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class HubServer:
    """Run the fake Hub on a free loopback port in a background thread."""

    def __init__(self):
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class BlackHole:
    """A loopback port that accepts connections and never answers (counts them)."""

    def __init__(self):
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.accepted = 0
        self.connected = threading.Event()  # set at the first connection
        self._held = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)
            self.connected.set()

    def close(self):
        """Stop listening and hang up on every held connection: their clients fail at once."""
        import socket

        try:
            # Wakes the accept() below; a bare close() leaves the port listening until accept() returns.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
