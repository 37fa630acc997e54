"""A scripted OpenAI-compatible chat completions server on 127.0.0.1, for tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server:
    """Answers each POST from ``script``, a queue of (status, headers, body), or else with ``reply(n)``
    (n: the request's number) as every choice's message, after ``delay`` seconds. Requests are kept."""

    def __init__(self, *, reply: Callable[[int], str] = lambda n: f"reply {n}", delay: float = 0.0) -> None:
        self.requests, self.script = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"auth": self.headers.get("Authorization"), "body": body})
                status, headers, payload = outer.script.pop(0) if outer.script else (200, {}, None)
                if payload is None:
                    payload = {"choices": [{"message": {"content": reply(len(outer.requests))}}] * body.get("n", 1),
                               "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
                time.sleep(delay)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
