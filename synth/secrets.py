"""API keys at rest, and which hosts HTTP endpoints may reach.

Keys are encrypted with Fernet (AES-128-CBC + HMAC) under a key derived from ``ENDPOINT_SECRET``
(defaulting to ``SECRET_KEY``); they are decrypted only in the worker that makes the request,
never rendered, logged or put in a task message.

Base URLs must name a host in ``ENDPOINT_ALLOWED_HOSTS`` (set by the operator): the platform must
not become a way to reach arbitrary internal addresses (SSRF), and redirects are never followed.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError


def _fernet():
    from cryptography.fernet import Fernet

    secret = (getattr(settings, "ENDPOINT_SECRET", "") or settings.SECRET_KEY).encode()
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"endpoint-api-key:" + secret).digest()))


def api_key_encrypt(key: str) -> str:
    return _fernet().encrypt(key.encode()).decode() if key else ""


def api_key_decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode() if token else ""


def base_url_normalise(url: str) -> str:
    """The base URL the OpenAI-compatible routes hang from: no trailing slash, no route of its own
    (``/chat/completions``, ``/completions``, ``/models``), and ``/v1`` when no path is given at all (the
    usual mistake: ``http://host:8000`` for ``http://host:8000/v1``)."""
    url = url.strip().rstrip("/")
    for route in ("/chat/completions", "/completions", "/models"):
        if url.endswith(route):
            url = url[: -len(route)]
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/"):
        url = f"{parts.scheme}://{parts.netloc}/v1"
    return url


def _allowed_entry(entry: str) -> tuple[str, int | None]:
    """(host, port or None) of an ``ENDPOINT_ALLOWED_HOSTS`` entry: ``host``, ``.domain``, ``host:port``,
    ``[ipv6]`` or ``[ipv6]:port``."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    return host, int(port) if port.isdigit() else None


def base_url_check(url: str) -> None:
    """Raise ValidationError unless ``url`` is http(s) to an allowed host (and, where the entry names one,
    to that port only: ``127.0.0.1:8001`` allows that port of that host and no other)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError({"base_url": "must start with http:// or https://"})
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError({"base_url": "the port is not a number from 0 to 65535"}) from None
    allowed = settings.ENDPOINT_ALLOWED_HOSTS
    for entry in allowed:
        allowed_host, allowed_port = _allowed_entry(entry)
        host_ok = host == allowed_host or (allowed_host.startswith(".") and host.endswith(allowed_host))
        if host_ok and allowed_port in (None, port):
            return
    raise ValidationError(
        {"base_url": f"{host}:{port} is not allowed by ENDPOINT_ALLOWED_HOSTS ({', '.join(allowed)})"})
