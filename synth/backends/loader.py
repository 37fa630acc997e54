"""Which backend serves an endpoint, loaded at most once per worker process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from synth.backends.base import Backend


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    backends: dict[tuple, Backend] = field(default_factory=dict)


_cache = _Cache()


def backend_load(*, kind: str, path: str, base_url: str = "", dtype: str = "float32", device: str = "cpu",
                 http: Callable[[], Backend] | None = None, version: object = None) -> Backend:
    """Return the backend for these settings, loading the model at most once per process.

    HTTP backends are built by ``http()`` (which holds the decrypted key and the cache); ``version``
    changes when the endpoint's settings do, so an edited endpoint gets a fresh client.
    """
    key = (kind, path, base_url, dtype, device, version)
    with _cache.lock:
        backend = _cache.backends.get(key)
        if backend is None:
            if kind == "openai":
                if http is None:
                    raise ValueError("an HTTP endpoint needs its client factory")
                backend = http()
            elif kind in ("scorer", "step_scorer"):
                from synth.backends.scorer import ScorerBackend, StepScorerBackend

                scorer = ScorerBackend if kind == "scorer" else StepScorerBackend
                backend = scorer(path, dtype=dtype, device=device)
            else:
                from synth.backends.local import TransformersBackend

                model_dir = path
                if kind == "gguf":
                    from synth.backends.gguf import gguf_convert

                    model_dir = str(gguf_convert(path))
                backend = TransformersBackend(model_dir, dtype=dtype, device=device)
            _cache.backends[key] = backend
        return backend


def backend_cache_clear() -> None:
    with _cache.lock:
        _cache.backends.clear()
