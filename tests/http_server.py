"""A scripted OpenAI-compatible chat completions server on 127.0.0.1, for tests, that can behave as the
servers researchers run do (``flavour``):

- ``"openai"`` (the default) and ``"vllm"``: honour ``n``, give log-probabilities when asked; vLLM answers
  404 for a model it does not serve;
- ``"llamacpp"`` and ``"ollama"``: ignore ``n`` and answer one choice; Ollama gives no log-probabilities;
- ``"tgi"``: refuses ``n`` > 1 with a 422, gives log-probabilities.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAVOURS = ("openai", "vllm", "llamacpp", "ollama", "tgi")


class Server:
    """Answers each POST from ``script``, a queue of (status, headers, body), or else with ``reply(n)``
    (n: the request's number) as every choice's message, after ``delay`` seconds; ``GET /v1/models``
    lists ``models``. Requests are kept. After ``fail_after`` answered requests, every request gets a 500
    (a server going down part-way) until ``fail_after`` is set back to None."""

    def __init__(self, *, reply: Callable[[int], str] = lambda n: f"reply {n}", delay: float = 0.0,
                 flavour: str = "openai", models: tuple[str, ...] = ("m", "judge-model", "judge")) -> None:
        assert flavour in FLAVOURS
        self.requests, self.script, self.log = [], [], []
        self.flavour, self.models, self.fail_after = flavour, list(models), None
        self.answered = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, payload: object, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path.rstrip("/").endswith("/v1/models"):
                    self._answer(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"auth": self.headers.get("Authorization"), "body": body})
                    number = len(outer.requests)
                    scripted = outer.script.pop(0) if outer.script else None
                    failing = outer.fail_after is not None and outer.answered >= outer.fail_after
                if failing:
                    with outer.lock:
                        outer.log.append((body, 500))
                    return self._answer(500, {"error": "the server is down"})
                time.sleep(delay)
                payload, status = outer.answer(body, number)
                headers = {}
                if scripted is not None:  # (status, headers, body); a body of None: the usual answer
                    status, headers, scripted_payload = scripted
                    payload = payload if scripted_payload is None else scripted_payload
                with outer.lock:
                    outer.answered += status == 200
                    outer.log.append((body, status))
                self._answer(status, payload, headers)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.reply = reply

    def answer(self, body: dict, number: int) -> tuple[dict, int]:
        if self.flavour == "vllm" and body.get("model") not in self.models:
            return {"object": "error", "message": f"The model `{body.get('model')}` does not exist.",
                    "type": "NotFoundError", "code": 404}, 404
        n = body.get("n", 1)
        if self.flavour == "tgi" and n > 1:
            return {"error": "Input validation error: `n` must be 1", "error_type": "validation"}, 422
        if self.flavour in ("llamacpp", "ollama"):
            n = 1
        text = self.reply(number)
        # A reply longer than max_tokens (counted in words here) is cut there, as servers do.
        words, limit = text.split(" "), body.get("max_tokens") or 1 << 30
        text, finish = (" ".join(words[:limit]), "length") if len(words) > limit else (text, "stop")
        choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        if body.get("logprobs") and self.flavour != "ollama":
            top = [{"token": "A", "logprob": -0.3}, {"token": "B", "logprob": -1.4}, {"token": "Yes", "logprob": -2.0}]
            top = top[:body.get("top_logprobs") or 3]
            choice["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                               "top_logprobs": top}]}
        # Each request's own usage: its prompt's length, so no two differ by accident.
        prompt = sum(len(m.get("content", "")) for m in body.get("messages", []))
        usage = {"prompt_tokens": 10 + prompt // 100, "completion_tokens": 5}
        choices = [{**choice, "index": i, "message": {"role": "assistant", "content": text + (f" #{i}" if i else "")}}
                   for i in range(n)]  # several samples differ, as sampled ones do
        return {"choices": choices, "usage": usage}, 200

    def close(self) -> None:
        """Stop answering and free the port: a request then finds no server (connection refused)."""
        self.httpd.shutdown()
        self.httpd.server_close()
