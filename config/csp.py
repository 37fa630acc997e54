"""The Content-Security-Policy middleware: django-csp's, plus the allowances of a few paths.

The policy is ``CONTENT_SECURITY_POLICY`` in settings; ``CONTENT_SECURITY_POLICY_PATHS`` adds sources to
directives on the paths that start with a given prefix only (and nowhere else)."""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


class PathCSPMiddleware(CSPMiddleware):
    def get_policy_parts(self, request: HttpRequest, response: HttpResponseBase,
                         report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        for prefix, extra in getattr(settings, "CONTENT_SECURITY_POLICY_PATHS", {}).items():
            if request.path_info.startswith(prefix):
                update = dict(parts.update or {})
                for directive, sources in extra.items():
                    update[directive] = [*update.get(directive, []), *sources]
                parts.update = update
        return parts
