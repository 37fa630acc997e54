"""An OpenAI-compatible chat completions server (vLLM, TGI, Ollama, OpenAI...)."""

from __future__ import annotations

import json
import math
import urllib.request

from annotate.text import text_clean
from synth.backends.base import Conversation, Sampling


class OpenAIBackend:
    def __init__(self, *, base_url: str, model: str, api_key: str = "", timeout: float = 120.0) -> None:
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout = timeout

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
            return json.loads(response.read())

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        out = []
        for conversation in conversations:
            body = {"model": self.model, "messages": conversation, "n": sampling.n,
                    "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                    "top_p": sampling.top_p}
            if sampling.seed is not None:
                body["seed"] = sampling.seed
            data = self._post(body)
            out.append([text_clean(choice["message"]["content"] or "") for choice in data["choices"]])
        return out

    def score(self, conversations: list[Conversation], candidates: list[list[str]]) -> list[list[float]]:
        """Single-token candidates only: read them from the first token's top log-probabilities."""
        out = []
        for conversation, cands in zip(conversations, candidates, strict=True):
            data = self._post({"model": self.model, "messages": conversation, "max_tokens": 1,
                               "temperature": 0, "logprobs": True, "top_logprobs": 20})
            top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            table = {entry["token"].strip(): entry["logprob"] for entry in top}
            out.append([table.get(c.strip(), -math.inf) for c in cands])
        return out
