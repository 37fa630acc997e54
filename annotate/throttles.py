"""Request rate limits of the API: per user, per anonymous client, and for logging in (per IP address and
per account). Rates come from ``settings.API_THROTTLE_RATES`` ("N/s|min|hour|day", or None for no limit),
read at each request.

A fixed window counted with the cache's atomic increment: one cache round trip a request, whatever the
rate (DRF's own throttles keep a list of every request of the window, too slow for the annotation hot
path, which obeys the same user limit: ``user_throttle_wait``). The counts live in the default cache: per
process with the local-memory cache, shared by every process with ``CACHE_URL`` (Redis).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate(scope: str) -> tuple[int, int] | None:
    rate = settings.API_THROTTLE_RATES.get(scope)
    if not rate:
        return None
    number, period = rate.split("/")
    return int(number), _PERIODS[period[0]]


def _window_wait(scope: str, ident: str) -> float | None:
    """Count a request of ``ident`` in the current window: None when allowed, else the seconds to wait."""
    rate = _rate(scope)
    if rate is None:
        return None
    number, duration = rate
    now = time.time()
    window = int(now // duration)
    key = f"throttle:{scope}:{ident}:{window}"
    try:  # one cache operation a request, but the first of each window
        count = cache.incr(key)
    except ValueError:  # the window's first request
        count = 1 if cache.add(key, 1, duration + 1) else cache.incr(key)
    return None if count <= number else (window + 1) * duration - now


class _Window(BaseThrottle):
    scope = ""

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        ident = self.ident(request)
        self._wait = None if ident is None else _window_wait(self.scope, ident)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


class UserThrottle(_Window):
    """Every signed-in user, whatever the endpoint (the hot path too)."""

    scope = "user"

    def ident(self, request) -> str | None:
        return str(request.user.pk) if request.user and request.user.is_authenticated else None


class AnonThrottle(_Window):
    """Clients that are not signed in, by IP address."""

    scope = "anon"

    def ident(self, request) -> str | None:
        return None if request.user and request.user.is_authenticated else self.get_ident(request)


class LoginIPThrottle(_Window):
    """Attempts to get a token, by IP address (failed logins also count towards django-axes' lockout)."""

    scope = "login_ip"

    def ident(self, request) -> str | None:
        return self.get_ident(request)


class LoginAccountThrottle(_Window):
    """Attempts to get a token, by the account asked for, from any address."""

    scope = "login_account"

    def ident(self, request) -> str | None:
        try:
            username = request.data.get("username")
        except Exception:  # an unparsable body: the view answers it
            return None
        return str(username).strip().lower()[:150] if username else None


def user_throttle_wait(user_id: int) -> float | None:
    """The user limit, for the hot path: None when the request is allowed, else the seconds to wait."""
    return _window_wait(UserThrottle.scope, str(user_id))
