"""How the API answers what goes wrong: every error is JSON with a message in ``detail`` (and, for invalid
input, the messages of each field), never a 500 for bad input, and the schema says which errors each
operation may answer.

* ``exception_handler`` (DRF's ``EXCEPTION_HANDLER``): DRF's own, plus a service's ValidationError (400),
  a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413) and Django's refusals of a request (400).
* ``not_found``, ``bad_request``, ``permission_denied``, ``server_error``: Django's error views
  (``handler404`` ...) answering JSON under ``/api/`` and Django's pages elsewhere: a path that matches no
  URL never reaches DRF.
* ``JSONParser`` / ``FormParser``: DRF's, reading at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes, and a JSON
  body nested too deeply for Python is a 400, not a RecursionError.
* ``TokenAuthentication``: DRF's, refusing a key no token can have before asking the database (PostgreSQL
  refuses a NUL byte in a query with an error of its own).
* ``IdConverter``: the ``<id:...>`` of the API's paths, a row id up to 2**63 - 1: a larger number matches no
  URL (a 404) instead of overflowing SQLite's integers.
* ``errors_document``: a drf-spectacular postprocessing hook that declares those errors in the schema.
"""

from __future__ import annotations

import io
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import register_converter
from django.views import defaults
from rest_framework import authentication, exceptions, parsers, status
from rest_framework.response import Response

API_PREFIX = "/api/"
ID_MAX = 2**63 - 1  # the largest id of a BigAutoField (and of SQLite's integers)
# A token key as DRF makes them is 40 hex digits; anything else printable up to the column's length may
# have been set by hand. A key with other characters is no token's.
_TOKEN_KEY = re.compile(r"[\x21-\x7e]{1,40}")


class IdConverter:
    """A row id: 1 to 19 digits, at most ``ID_MAX``."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > ID_MAX:
            raise ValueError("not an id")  # no match: the URL resolver goes on, and answers 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _too_large() -> RequestTooLarge:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return RequestTooLarge(f"The request body is too large: at most {limit} bytes (files uploaded as "
                           f"multipart/form-data do not count).")


def _body_read(stream) -> bytes:
    """The body, or RequestTooLarge past ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django's own limit for bodies it
    parses, which DRF's parsers do not apply: they read the stream)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(body) > limit:
        raise _too_large()
    return body


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = _body_read(stream)
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply.") from None


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return super().parse(io.BytesIO(_body_read(stream)), media_type, parser_context)


def token_key_valid(key: str) -> bool:
    """Whether ``key`` could be a token's key (the hot path asks too, before its own query)."""
    return bool(_TOKEN_KEY.fullmatch(key))


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        if not token_key_valid(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)


def _first_message(errors: object, path: str = "") -> str:
    """The first message of DRF's nested errors, with where it is ("ratings.2: ...")."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            return _first_message(value, f"{path}.{key}" if path else str(key))
    elif isinstance(errors, list | tuple):
        for value in errors:
            return _first_message(value, path)
    elif errors is not None:
        return f"{path}: {errors}" if path and path != "non_field_errors" else str(errors)
    return "Invalid input."


def _django_validation_detail(exc: DjangoValidationError) -> dict | list:
    return exc.message_dict if hasattr(exc, "error_dict") else exc.messages


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, for the errors of the services and of Django's request parsing too; every answer has a
    ``detail`` message (invalid input: the first field's, the fields' own below it)."""
    # Imported here: DRF's views read the authentication setting, which names this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_detail(exc))
    elif isinstance(exc, RequestDataTooBig):
        exc = _too_large()
    elif isinstance(exc, SuspiciousOperation):  # too many fields or files in a form, a bad multipart body
        exc = exceptions.ParseError(str(exc) or "The request could not be read.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 (JSON under /api/: server_error), logged
    data = response.data
    if isinstance(data, list):
        response.data = {"detail": _first_message(data), "non_field_errors": data}
    elif isinstance(data, dict) and "detail" not in data:
        response.data = {"detail": _first_message(data), **data}
    return response


def _api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _api(request):
        return JsonResponse({"detail": "Not found: no such API path (ids are whole numbers)."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": str(_too_large().detail)}, status=413)
        return JsonResponse({"detail": "Bad request: it could not be read."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _api(request):
        return JsonResponse({"detail": str(exception or "") or "Permission denied."}, status=403)
    return defaults.permission_denied(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _api(request):
        return JsonResponse({"detail": "Server error: it was logged. Try again later, or tell an administrator."},
                            status=500)
    return defaults.server_error(request)


# --- the schema -----------------------------------------------------------------------------------------------

_ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
_INVALID = {
    "type": "object",
    "description": "`detail` says what is wrong first; each field with errors has its messages (a list, or "
                   "an object for the items of a list or object).",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "additionalProperties": {},
}
_ERRORS = {
    "400": ("Invalid input: `detail`, and the messages of each field.", "ValidationError"),
    "401": ("No credentials, or a token or session that is not valid.", "Error"),
    "403": ("Signed in, but not allowed: this needs a role or permission the caller lacks (or a CSRF token "
            "with a session).", "Error"),
    "404": ("No such object, or one the caller may not see (a stranger is not told a project exists).",
            "Error"),
    "413": ("The request body is over the limit.", "Error"),
    "415": ("A content type the operation does not read.", "Error"),
    "429": ("Too many requests: wait as long as Retry-After says.", "Error"),
}


def _error_response(code: str) -> dict:
    description, component = _ERRORS[code]
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}}


def errors_document(result: dict, generator, request, public) -> dict:
    """Declare on every operation the errors it may answer: 401 and 403 where it needs credentials, 404
    everywhere (an id, or DRF's ``?format=``), 400 where it reads input, 413 and 415 where it reads a body,
    429 when requests are throttled."""
    from rest_framework.settings import api_settings

    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", _ERROR)
    schemas.setdefault("ValidationError", _INVALID)
    throttled = bool(api_settings.DEFAULT_THROTTLE_CLASSES)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            codes = ["404"]
            security = operation.get("security", [])
            if security and {} not in security:
                codes += ["401", "403"]
            has_body = "requestBody" in operation
            if has_body or any(p.get("in") == "query" for p in operation.get("parameters", [])):
                codes.append("400")
            if has_body:
                codes += ["413", "415"]
            if throttled:
                codes.append("429")
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                responses.setdefault(code, _error_response(code))
            for code, response in responses.items():  # an error the view documents itself (409) has a body too
                if code.startswith("4") and "content" not in response:
                    response["content"] = _error_response("404")["content"]
    return result
