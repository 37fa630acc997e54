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


def base_url_check(url: str) -> None:
    """Raise ValidationError unless ``url`` is http(s) to an allowed host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError({"base_url": "must start with http:// or https://"})
    host = (parts.hostname or "").lower()
    allowed = [h.lower() for h in settings.ENDPOINT_ALLOWED_HOSTS]
    if not any(host == a or (a.startswith(".") and host.endswith(a)) for a in allowed):
        raise ValidationError({"base_url": f"host {host!r} is not in ENDPOINT_ALLOWED_HOSTS ({', '.join(allowed)})"})
