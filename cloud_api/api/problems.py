"""Every error as an RFC 9457 problem document (``application/problem+json``).

``{type, title, status, detail, instance}``, plus ``errors`` (where and what) for a request that
failed validation. Routes raise ``fastapi.HTTPException`` with a precise ``detail``; this module
turns it, a validation error, or anything unexpected (a 500 that tells nothing of the internals)
into a problem.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem response for ``request``; ``type`` is about:blank, as RFC 9457 has it when the
    status code says it all."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = list(errors)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _detail_text(detail: Any) -> str:
    return detail if isinstance(detail, str) else str(jsonable_encoder(detail))


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(request, exc.status_code, _detail_text(exc.detail), headers=exc.headers)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Each failing field as FastAPI names it: ``loc`` (["body", "consent", "personal_offers"],
    ["query", "limit"]), ``msg`` and ``type``; never the input, which may be a secret."""
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in exc.errors()
    ]


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    fields = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem(request, 422, f"invalid request: {fields}{more}", errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(
        request, 500, "the server failed to handle this request; the error is in its log"
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
