"""One place that turns every error into ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from leptonic.errors import PROBLEM_CONTENT_TYPE, LeptonicError, problem

log = logging.getLogger(__name__)

_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
           415: "Unsupported media type", 422: "Invalid input", 429: "Too many requests"}


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None
                     ) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["status"]), headers=headers,
                        media_type=PROBLEM_CONTENT_TYPE)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_detail(errors: list[dict[str, Any]]) -> str:
    msgs = []
    for e in errors[:10]:
        where = _where(e.get("loc", ()))
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            msgs.append("the request body is not valid JSON")
        else:
            msgs.append(f"{where}: {msg}")
    return "; ".join(msgs)


def install(app: FastAPI) -> None:
    @app.exception_handler(LeptonicError)
    async def _leptonic(request: Request, exc: LeptonicError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429 and "retry_after" in exc.extra:
            headers = {"Retry-After": str(exc.extra["retry_after"])}
        return problem_response(exc.to_problem(request.url.path), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")}
                  for e in exc.errors()]
        body = problem(422, "Invalid input", validation_detail(errors),
                       instance=request.url.path, errors=errors)
        return problem_response(body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = (f"no API route {request.method} {request.url.path}; "
                      "see docs/API.md or /docs")
        body = problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), detail,
                       instance=request.url.path)
        return problem_response(body, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = problem(500, "Internal error",
                       f"the control plane failed on this request ({type(exc).__name__}); "
                       "the server log has the details", instance=request.url.path)
        return problem_response(body)
