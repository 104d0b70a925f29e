"""One error shape for the whole API (docs/api.md#errors).

Every error from ``/v3/*`` is ``{"error": <stable code>, "message": <sentence>}``
plus optional detail keys. This module's ``exception_handler`` is DRF's
``EXCEPTION_HANDLER``; ``json_404``/``json_500`` cover what never reaches DRF.

The database out of reach (an ``OperationalError`` or ``InterfaceError``, wherever it is
raised while serving ``/v3/*``; the rule is ``portal.outages.database_unreachable``) is a
503 ``service_unavailable`` with ``Retry-After``, not a 500: the client should retry in a
moment. Programming errors (``ProgrammingError``, ``IntegrityError``, ``DataError``) stay
500 ``internal_error``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions, status
from rest_framework.response import Response

from portal.outages import database_unreachable

logger = logging.getLogger(__name__)

# Seconds a client is asked to wait (``Retry-After``) when the database is out of reach: a
# restart of the database takes seconds, and a retry costs one cheap failed connection.
SERVICE_UNAVAILABLE_RETRY_AFTER = 5


class ApiError(exceptions.APIException):
    """An error with a stable code, a message for a person and optional details."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"
    default_detail = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=message or self.default_detail, code=code or self.default_code)
        self.error_code = code or self.default_code
        self.message = str(message or self.default_detail)
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}
        self.headers = headers or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.NotAuthenticated: "authentication_failed",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "invalid_body",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid_request",
}


def service_unavailable() -> ApiError:
    """The 503 of a backend out of reach (docs/api.md#errors), with ``Retry-After``."""
    return ApiError(
        "The service is temporarily unavailable; retry after the number of seconds in Retry-After.",
        code="service_unavailable",
        status_code=503,
        headers={"Retry-After": str(SERVICE_UNAVAILABLE_RETRY_AFTER)},
    )


def _log_database_unreachable(exc: BaseException, request: Any, where: str) -> None:
    # The exception's class only: a driver's message can name hosts, users and databases.
    logger.warning(
        "database unavailable: %s while serving %s %s (%s); answered 503",
        type(exc).__name__,
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
        where,
    )


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(v) for v in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if database_unreachable(exc):
        _log_database_unreachable(exc, context.get("request"), context.get("view").__class__.__name__)
        response = _api_error_response(service_unavailable())
        response._has_been_logged = True  # type: ignore[attr-defined]  # not again by django.request
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("No such resource.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        # Raised while DRF reads the body: a client error, not a 500.
        exc = ApiError("The request body is too large.", code="request_too_large", status_code=413)
    elif isinstance(exc, SuspiciousOperation):  # e.g. TooManyFieldsSent from a form body
        logger.warning("Suspicious request: %s", type(exc).__name__)
        exc = ApiError("The request could not be understood.", code="bad_request")

    if isinstance(exc, ApiError):
        response = _api_error_response(exc)
    elif isinstance(exc, exceptions.APIException):
        code = _CODES.get(type(exc)) or next(
            (c for klass, c in _CODES.items() if isinstance(exc, klass)), "error"
        )
        if isinstance(exc, exceptions.PermissionDenied) and exc.default_code != "permission_denied":
            code = str(exc.default_code)
        message = _flatten(exc.detail)
        if isinstance(exc, exceptions.ParseError):
            message = "The request body could not be parsed: " + message
        body = error_body(code, message)
        if isinstance(exc, exceptions.ValidationError):
            body["details"] = exc.detail
        response = Response(body, status=exc.status_code)
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            response["Retry-After"] = str(max(1, int(wait + 0.999)))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            response["WWW-Authenticate"] = auth_header
    else:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        response = Response(
            error_body("internal_error", "Something went wrong on our side; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if response.status_code == 401 and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = 'Basic realm="bulk-restore"'
    return response


def _api_error_response(exc: ApiError) -> Response:
    body = error_body(exc.error_code, exc.message, **exc.extra)
    return Response(body, status=exc.status_code, headers=exc.headers)


def _wants_json(request: HttpRequest) -> bool:
    return request.path in ("/v3", "/api") or request.path.startswith(("/v3/", "/api/"))


def json_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return page_not_found(request, exception or Http404())


def json_500(request: HttpRequest) -> HttpResponse:
    """Django's ``handler500``: called while the exception is being handled (``sys.exc_info``).

    It covers what fails outside DRF's handler (middleware, a view that is not DRF's): under
    ``/v3/`` the database out of reach is the same 503 as in ``exception_handler``.
    """
    exc = sys.exc_info()[1]
    if _wants_json(request):
        if exc is not None and database_unreachable(exc):
            _log_database_unreachable(exc, request, "outside the API's views")
            unavailable = service_unavailable()
            response = JsonResponse(
                error_body(unavailable.error_code, unavailable.message),
                status=unavailable.status_code,
                headers=unavailable.headers,
            )
            response._has_been_logged = True  # type: ignore[attr-defined]  # not again by django.request
            return response
        return JsonResponse(
            error_body("internal_error", "Something went wrong on our side; it has been logged."),
            status=500,
        )
    return server_error(request)


def json_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception or Exception())
