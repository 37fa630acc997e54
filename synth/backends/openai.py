"""An OpenAI-compatible chat completions server (vLLM, TGI, Ollama, llama.cpp, OpenAI...).

Requests run ``max_concurrency`` at a time under a requests-per-minute limit, time out, and are
retried with exponential backoff (honouring ``Retry-After``) on 429, 5xx and network errors.
Redirects are never followed. A cache (any object with ``get(key)`` and ``put(key, response)``)
makes sure the same request is never paid twice: each complete, valid answer is kept the moment it
arrives, so a batch that fails part-way loses none of what was paid for. No Django import: the caller
injects the cache, the decrypted key and what the server is known to support.

Servers differ (see the README's table): llama.cpp and Ollama ignore ``n`` and answer one choice, so
``n`` samples are asked for in one request only where the server honours it, the choices are counted,
and the missing ones are asked for one by one (with their own seeds): a caller always gets the number
of samples it asked for. Servers without log-probabilities in chat completions cannot serve ``score``:
it says so instead of failing on a missing key.
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
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from prefdata.records import text_clean
from synth.backends.base import Conversation, Reply, Sampling

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ResponseCache(Protocol):
    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, response: dict) -> None: ...


class EndpointError(RuntimeError):
    """The server refused or kept failing; the message never contains the API key. An expected failure:
    jobs record its message without a traceback. ``status``: the HTTP status that ended it, if any."""

    expected = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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


@dataclass
class _Request:
    """One request: its body, the cache key of its answer, and the conversation it answers."""

    body: dict[str, Any]
    key: str
    conversation: int
    choices: int = 1  # how many choices a valid answer has
    logprobs: bool = False  # a valid answer has the first token's top log-probabilities


class OpenAIBackend:
    def __init__(self, *, base_url: str, model: str, api_key: str = "", timeout: float = 60.0,
                 max_concurrency: int = 4, requests_per_minute: int | None = None, max_retries: int = 4,
                 cache: ResponseCache | None = None, backoff_base: float = 0.5,
                 capabilities: dict | None = None,
                 on_capability: Callable[[str, object], None] | None = None) -> None:
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
        # What the server is known to support (``endpoint_probe``); None: not known yet, learnt on use.
        capabilities = capabilities or {}
        self.supports_n: bool | None = capabilities.get("n")
        self.supports_logprobs: bool | None = capabilities.get("logprobs")
        self.top_logprobs = min(20, int(capabilities.get("top_logprobs") or 20))
        self.on_capability = on_capability
        # (prompt, completion) tokens paid for each conversation of the last generate/score call; (0, 0)
        # for an answer from the cache: what each judgment or sample cost.
        self.last_usage: list[tuple[int, int]] = []

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r})"

    @staticmethod
    def request_key(url: str, body: dict, sample: int | None = None) -> str:
        text = url + "\n" + json.dumps(body, sort_keys=True) + ("" if sample is None else f"\n#{sample}")
        return hashlib.sha256(text.encode()).hexdigest()

    def _learn(self, name: str, value: object) -> None:
        if getattr(self, f"supports_{name}") != value:
            setattr(self, f"supports_{name}", value)
            if self.on_capability is not None:
                self.on_capability(name, value)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key.reveal():
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers

    def _send(self, path: str, body: dict | None = None) -> dict:
        """POST ``body`` (GET without one) to ``path`` under the limits, with retries; the answer's JSON."""
        url = f"{self.base_url}/{path}"
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            retry_after = None
            try:
                request = urllib.request.Request(url, data=payload, headers=self._headers(),
                                                 method="POST" if body is not None else "GET")
                with _opener.open(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS or attempt == self.max_retries:
                    detail = exc.read()[:300].decode(errors="replace")
                    raise EndpointError(f"{url} answered {exc.code}: {detail}", status=exc.code) from None
                retry_after = exc.headers.get("Retry-After")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.max_retries:
                    raise EndpointError(f"{url} unreachable after {attempt + 1} tries: {exc}") from None
            except ValueError as exc:  # not JSON
                raise EndpointError(f"{url} answered something that is not JSON: {exc}") from None
            self.usage.add(retries=1)
            delay = self.backoff_base * 2**attempt * (1 + random.random() / 4)
            if retry_after:
                try:
                    delay = max(delay, float(retry_after))
                except ValueError:
                    pass
            time.sleep(min(delay, 60.0))
        raise AssertionError("unreachable")

    def chat(self, body: dict) -> dict:
        """One chat completions request (no cache): its answer, counted in ``usage``."""
        data = self._send("chat/completions", body)
        usage = data.get("usage") or {} if isinstance(data, dict) else {}
        self.usage.add(requests=1, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                       completion_tokens=int(usage.get("completion_tokens") or 0))
        return data

    @staticmethod
    def choices_of(data: object) -> list[dict]:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            return []
        return [c for c in choices if isinstance((c.get("message") or {}).get("content", ""), str | type(None))]

    @staticmethod
    def top_logprobs_of(choice: dict) -> list[dict] | None:
        content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        if not isinstance(content, list) or not content or not isinstance(content[0], dict):
            return None
        top = content[0].get("top_logprobs")
        return top if isinstance(top, list) and top else None

    def _complete(self, request: _Request, data: dict) -> bool:
        """A complete, valid answer to ``request``: the only kind the cache keeps."""
        choices = self.choices_of(data)
        if len(choices) < request.choices:
            return False
        return not request.logprobs or self.top_logprobs_of(choices[0]) is not None

    def _map(self, requests: list[_Request]) -> tuple[list[dict], set[int]]:
        """Answer every request: from the cache when seen before, else from the server, concurrently; and
        which of them were paid for now.

        Each answer goes into the cache the moment it arrives, if it is complete (the cache is only
        touched from the calling thread: it may be a database). When a request fails, the ones in flight
        are awaited and kept, the others are not sent, and the error is raised. An incomplete answer is
        returned (not cached) for the caller to complete."""
        results: list[dict | None] = [self.cache.get(r.key) if self.cache is not None else None for r in requests]
        self.usage.add(cached=sum(r is not None for r in results))
        todo = [i for i, r in enumerate(results) if r is None]

        def keep(i: int, data: dict) -> None:
            results[i] = data
            if self.cache is not None and self._complete(requests[i], data):
                self.cache.put(requests[i].key, data)

        if len(todo) <= 1 or self.max_concurrency == 1:
            for i in todo:
                keep(i, self.chat(requests[i].body))
        else:
            with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
                pending: dict[Future, int] = {pool.submit(self.chat, requests[i].body): i for i in todo}
                error: BaseException | None = None
                while pending:
                    done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        i = pending.pop(future)
                        if future.cancelled():
                            continue
                        if future.exception() is not None:
                            if error is None:
                                error = future.exception()
                                for other in pending:
                                    other.cancel()  # not started yet: never sent
                            continue
                        keep(i, future.result())
                if error is not None:
                    raise error
        return results, set(todo)  # type: ignore[return-value]

    @staticmethod
    def _usage_of(data: dict) -> tuple[int, int]:
        usage = (data.get("usage") or {}) if isinstance(data, dict) else {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)

    # -- the Backend protocol ------------------------------------------------------------------------------

    def _body(self, conversation: Conversation, sampling: Sampling, *, n: int, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": conversation, "max_tokens": sampling.max_new_tokens,
                                "temperature": sampling.temperature, "top_p": sampling.top_p}
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        return body

    def _single(self, conversation: Conversation, sampling: Sampling, index: int, k: int) -> _Request:
        """Sample ``k`` of a conversation asked for on its own: seed + k, and a cache key of its own."""
        seed = None if sampling.seed is None else sampling.seed + k
        body = self._body(conversation, sampling, n=1, seed=seed)
        url = f"{self.base_url}/chat/completions"
        return _Request(body, self.request_key(url, body, None if k == 0 or seed is not None else k), index)

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        """For each conversation, exactly ``sampling.n`` replies: in one request where the server honours
        ``n``, else (and for the choices a server left out) one request a sample."""
        n = max(1, sampling.n)
        url = f"{self.base_url}/chat/completions"
        samples: list[list[str]] = [[] for _ in conversations]
        tokens = [[0, 0] for _ in conversations]

        def take(requests: list[_Request]) -> None:
            answers, paid = self._map(requests)
            for j, (request, data) in enumerate(zip(requests, answers, strict=True)):
                choices = self.choices_of(data)[:request.choices]
                texts = [Reply(text_clean((choice.get("message") or {}).get("content") or ""),
                               str(choice.get("finish_reason") or "")) for choice in choices]
                if request.choices > 1 and len(choices) < request.choices and self.cache is not None:
                    # A server that ignored n: keep each choice it did give as the sample it is, so that a
                    # resumed run asks for the missing ones only.
                    for k, choice in enumerate(choices):
                        single = self._single(conversations[request.conversation], sampling, request.conversation, k)
                        self.cache.put(single.key, {"choices": [choice], "usage": {}})
                samples[request.conversation].extend(texts)
                if j in paid:
                    p, c = self._usage_of(data)
                    tokens[request.conversation][0] += p
                    tokens[request.conversation][1] += c

        if n > 1 and self.supports_n is not False:
            together = []
            for i, conversation in enumerate(conversations):
                body = self._body(conversation, sampling, n=n, seed=sampling.seed)
                together.append(_Request(body, self.request_key(url, body), i, choices=n))
            try:
                take(together)
            except EndpointError as exc:
                if exc.status not in (400, 422):
                    raise
                samples = [[] for _ in conversations]  # a server that refuses n > 1 (TGI): one by one
                tokens = [[0, 0] for _ in conversations]
            if together:
                self._learn("n", all(len(got) == n for got in samples))
        missing = [(i, k) for i, got in enumerate(samples) for k in range(len(got), n)]
        if missing:
            take([self._single(conversations[i], sampling, i, k) for i, k in missing])
        short = [len(got) for got in samples if len(got) != n]
        if short:
            raise EndpointError(f"{self.base_url}: asked for {n} replies, got {short[0]}")
        self.last_usage = [(p, c) for p, c in tokens]
        return samples

    def score(self, conversations: list[Conversation], candidates: list[list[str]]) -> list[list[float]]:
        """Single-token candidates only: read them from the first token's top log-probabilities."""
        if self.supports_logprobs is False:
            raise EndpointError(f"{self.base_url} does not return log-probabilities in chat completions: judge "
                                f"with 'generate a rationale and parse the verdict' instead")
        url = f"{self.base_url}/chat/completions"
        requests = []
        for i, conversation in enumerate(conversations):
            body = {"model": self.model, "messages": conversation, "max_tokens": 1, "temperature": 0,
                    "logprobs": True, "top_logprobs": self.top_logprobs}
            requests.append(_Request(body, self.request_key(url, body), i, logprobs=True))
        answers, paid = self._map(requests)
        self.last_usage = [self._usage_of(d) if j in paid else (0, 0) for j, d in enumerate(answers)]
        out = []
        for data, cands in zip(answers, candidates, strict=True):
            choices = self.choices_of(data)
            top = self.top_logprobs_of(choices[0]) if choices else None
            if top is None:
                self._learn("logprobs", False)
                raise EndpointError(f"{self.base_url} answered without log-probabilities: this server cannot "
                                    f"serve a log-probability judge; use 'generate a rationale and parse the "
                                    f"verdict' instead")
            table: dict[str, float] = {}
            for entry in top:  # " A" and "A" are the same answer: keep the likelier spelling
                if isinstance(entry, dict) and isinstance(entry.get("token"), str):
                    token = entry["token"].strip()
                    table[token] = max(table.get(token, -math.inf), float(entry.get("logprob", -math.inf)))
            out.append([table.get(c.strip(), -math.inf) for c in cands])
        if requests:
            self._learn("logprobs", True)
        return out

    def models(self) -> list[str]:
        """The model ids the server lists (``GET /models``)."""
        data = self._send("models")
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise EndpointError(f"{self.base_url}/models answered without a list of models")
        return [str(row.get("id")) for row in rows if isinstance(row, dict) and row.get("id")]
