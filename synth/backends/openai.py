"""An OpenAI-compatible chat completions server (vLLM, TGI, Ollama, OpenAI...).

Requests run ``max_concurrency`` at a time under a requests-per-minute limit, time out, and are
retried with exponential backoff (honouring ``Retry-After``) on 429, 5xx and network errors.
Redirects are never followed. A cache (any object with ``get(key)`` and ``put(key, response)``)
makes sure the same request is never paid twice. No Django import: the caller injects the
cache and the decrypted key.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from prefdata.records import text_clean
from synth.backends.base import Conversation, Sampling

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ResponseCache(Protocol):
    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, response: dict) -> None: ...


class EndpointError(RuntimeError):
    """The server refused or kept failing; the message never contains the API key."""


class Secret:
    """A value that never appears in a repr, a log line or a traceback's locals dump."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def reveal(self) -> str:
        return self._value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        raise EndpointError(f"the endpoint answered with a redirect ({code}); redirects are not followed")


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass
class RateLimiter:
    """At most ``per_minute`` starts in any 60 s (a sliding window), shared by the threads."""

    per_minute: int | None
    _starts: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        if not self.per_minute:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._starts = [t for t in self._starts if now - t < 60.0]
                if len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    return
                delay = 60.0 - (now - self._starts[0])
            time.sleep(max(delay, 0.01))


@dataclass
class Usage:
    requests: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class OpenAIBackend:
    def __init__(self, *, base_url: str, model: str, api_key: str = "", timeout: float = 60.0,
                 max_concurrency: int = 4, requests_per_minute: int | None = None, max_retries: int = 4,
                 cache: ResponseCache | None = None, backoff_base: float = 0.5) -> None:
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = Secret(api_key)
        self.timeout = timeout
        self.max_concurrency = max(1, max_concurrency)
        self.limiter = RateLimiter(requests_per_minute)
        self.max_retries = max_retries
        self.cache = cache
        self.backoff_base = backoff_base
        self.usage = Usage()

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r})"

    @staticmethod
    def request_key(url: str, body: dict) -> str:
        return hashlib.sha256((url + "\n" + json.dumps(body, sort_keys=True)).encode()).hexdigest()

    def _post(self, body: dict) -> dict:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self._api_key.reveal():
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        payload = json.dumps(body).encode()
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            retry_after = None
            try:
                request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
                with _opener.open(request, timeout=self.timeout) as response:
                    data = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS or attempt == self.max_retries:
                    detail = exc.read()[:300].decode(errors="replace")
                    raise EndpointError(f"{url} answered {exc.code}: {detail}") from None
                retry_after = exc.headers.get("Retry-After")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.max_retries:
                    raise EndpointError(f"{url} unreachable after {attempt + 1} tries: {exc}") from None
            self.usage.add(retries=1)
            delay = self.backoff_base * 2**attempt * (1 + random.random() / 4)
            if retry_after:
                try:
                    delay = max(delay, float(retry_after))
                except ValueError:
                    pass
            time.sleep(min(delay, 60.0))
        usage = data.get("usage") or {}
        self.usage.add(requests=1, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                       completion_tokens=int(usage.get("completion_tokens", 0)))
        return data

    def _map(self, bodies: list[dict]) -> list[dict]:
        """Answer every body: from the cache when seen before, else from the server, concurrently.
        The cache is only touched from the calling thread (it may be a database)."""
        url = f"{self.base_url}/chat/completions"
        keys = [self.request_key(url, b) for b in bodies]
        results: list[dict | None] = [self.cache.get(k) if self.cache is not None else None for k in keys]
        self.usage.add(cached=sum(r is not None for r in results))
        todo = [i for i, r in enumerate(results) if r is None]
        if len(todo) <= 1 or self.max_concurrency == 1:
            fresh = [self._post(bodies[i]) for i in todo]
        else:
            with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
                fresh = list(pool.map(self._post, [bodies[i] for i in todo]))
        for i, data in zip(todo, fresh, strict=True):
            results[i] = data
            if self.cache is not None:
                self.cache.put(keys[i], data)
        return results  # type: ignore[return-value]

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        bodies = []
        for conversation in conversations:
            body: dict[str, Any] = {"model": self.model, "messages": conversation, "n": sampling.n,
                                    "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                                    "top_p": sampling.top_p}
            if sampling.seed is not None:
                body["seed"] = sampling.seed
            bodies.append(body)
        return [[text_clean(choice["message"]["content"] or "") for choice in data["choices"]]
                for data in self._map(bodies)]

    def score(self, conversations: list[Conversation], candidates: list[list[str]]) -> list[list[float]]:
        """Single-token candidates only: read them from the first token's top log-probabilities."""
        bodies = [{"model": self.model, "messages": c, "max_tokens": 1, "temperature": 0, "logprobs": True,
                   "top_logprobs": 20} for c in conversations]
        out = []
        for data, cands in zip(self._map(bodies), candidates, strict=True):
            top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            table: dict[str, float] = {}
            for entry in top:  # " A" and "A" are the same answer: keep the likelier spelling
                token = entry["token"].strip()
                table[token] = max(table.get(token, -math.inf), entry["logprob"])
            out.append([table.get(c.strip(), -math.inf) for c in cands])
        return out
