"""Errors in OpenAI's JSON shape, so SDKs raise their usual exceptions.

Every failure the gateway produces — bad JSON, a body too large, an unknown
model, a missing key, a blocked prompt, an upstream outage — becomes
``{"error": {"message", "type", "param", "code"}}`` with a 4xx/5xx status.
Messages never quote the request body.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mantlet.errors import InvalidInputError, MantletError

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
}


class GatewayError(MantletError):
    """An error with an HTTP status and an OpenAI error code."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.headers = headers or {}


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")


def quoted_name(name: str) -> str | None:
    """A caller's field name, fit to quote in an error: only when it looks
    like an identifier. Anything else (a pasted value used as a key, say)
    is not repeated: messages never quote the request body."""
    return name if _IDENTIFIER.fullmatch(name) else None


def error_body(
    status: int, message: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int,
    message: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, code, param), status_code=status, headers=headers
    )


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway(_: Request, exc: GatewayError) -> Any:
        return error_response(exc.status, str(exc), exc.code, exc.param, exc.headers)

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, exc: InvalidInputError) -> Any:
        return error_response(400, str(exc), "invalid_request")

    @app.exception_handler(MantletError)
    async def _mantlet(_: Request, exc: MantletError) -> Any:
        status = getattr(exc, "status", 500)
        code = type(exc).__name__
        return error_response(status if isinstance(status, int) else 500, str(exc), code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Any:
        return error_response(400, "invalid request parameters", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Any:
        message = "not found" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message, None)
