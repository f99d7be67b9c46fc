"""The OpenAPI document, completed: who may call each operation, and its errors as RFC 9457
problem documents (``application/problem+json``, schema ``Problem``).

Who may call an operation is read from its authentication dependency, so a new route that
depends on ``require_admin``, ``require_store``... is documented without anything else to
write. The few operations that check a signature inside the handler (the shopper app's, which
also covers a body it must read raw, and Shopify's) are named in ``IN_HANDLER_CALLERS``; a
test fails for any operation that is in neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.api.problems import PROBLEM_JSON
from cloud_api.api.schemas import CartWebhook, ConsentUpdate
from cloud_api.auth.app_auth import raw_body
from cloud_api.auth.auth import (
    authenticate_caller,
    authenticate_staff,
    require_admin,
    require_integration,
    require_store,
)
from cloud_api.commerce.shopify import Checkout, ShopifyOrder
from cloud_api.routes.notifications import ReceiptIn
from cloud_api.routes.webhooks import signed_body
from cloud_api.shoppers.shopper_schemas import (
    CheckinIn,
    DeviceIn,
    IdentityLink,
    ShopperEventIn,
)

ADMIN = "the administrator (`Authorization: Bearer <admin token>`)"
STORE_STAFF = "the administrator, or staff of the store (`Authorization: Bearer <token>`)"
ANY_STAFF = (
    "the administrator or any staff member (`Authorization: Bearer <token>`); staff see only "
    "their stores"
)
TILL = "staff of the store (bearer token) or an integration API key of the store (`X-API-Key`)"
INTEGRATION = "an integration (`X-API-Key` from POST /v1/api-keys)"
CART_WEBHOOK = "a cart webhook signed with the shared webhook secret (`X-Storelink-Signature`)"
SHOPIFY_WEBHOOK = "Shopify, signing with the app's secret (`X-Shopify-Hmac-Sha256`)"
SHOPPER_APP = "the shopper's app, signing the request with its app key"
SHOPPER_APP_OR_ADMIN = f"{SHOPPER_APP}, or the administrator (bearer admin token)"
ANYONE = "anyone; no credentials"

# Ordered: the first dependency found (most specific first) names the callers.
_BY_DEPENDENCY: tuple[tuple[Callable[..., Any], str], ...] = (
    (require_admin, ADMIN),
    (require_store, STORE_STAFF),
    (authenticate_caller, TILL),
    (require_integration, INTEGRATION),
    (authenticate_staff, ANY_STAFF),
    (signed_body, CART_WEBHOOK),
)

IN_HANDLER_CALLERS: dict[tuple[str, str], str] = {
    ("POST", "/v1/shoppers"): ANYONE,
    ("GET", "/v1/shoppers/{shopper_id}"): SHOPPER_APP_OR_ADMIN,
    ("DELETE", "/v1/shoppers/{shopper_id}"): SHOPPER_APP_OR_ADMIN,
    ("PUT", "/v1/shoppers/{shopper_id}/consent"): SHOPPER_APP,
    ("GET", "/v1/shoppers/{shopper_id}/consent"): SHOPPER_APP_OR_ADMIN,
    ("POST", "/v1/shoppers/{shopper_id}/identities"): SHOPPER_APP,
    ("POST", "/v1/shoppers/{shopper_id}/devices"): SHOPPER_APP,
    ("GET", "/v1/shoppers/{shopper_id}/devices"): SHOPPER_APP_OR_ADMIN,
    ("DELETE", "/v1/shoppers/{shopper_id}/devices/{ref}"): SHOPPER_APP,
    ("POST", "/v1/shoppers/{shopper_id}/events"): SHOPPER_APP,
    ("GET", "/v1/shoppers/{shopper_id}/profile"): SHOPPER_APP_OR_ADMIN,
    ("GET", "/v1/shoppers/{shopper_id}/export"): SHOPPER_APP_OR_ADMIN,
    ("GET", "/v1/shoppers/{shopper_id}/notifications/stream"): SHOPPER_APP,
    ("POST", "/v1/notifications/{notification_id}/receipts"): SHOPPER_APP,
    ("POST", "/v1/presence/checkins"): SHOPPER_APP,
    ("POST", "/v1/webhooks/shopify"): SHOPIFY_WEBHOOK,
    ("POST", "/v1/auth/login"): ANYONE,
    ("GET", "/healthz"): ANYONE,
    ("GET", "/readyz"): ANYONE,
    ("GET", "/metrics"): ANYONE,
    ("GET", "/dashboard"): ANYONE,
}

# Bodies that a handler reads raw, to check their signature first, and parses itself: FastAPI
# cannot see them. Shopify's is an order or a checkout, by its X-Shopify-Topic.
RAW_BODIES: dict[tuple[str, str], tuple[type[BaseModel], ...]] = {
    ("PUT", "/v1/shoppers/{shopper_id}/consent"): (ConsentUpdate,),
    ("POST", "/v1/shoppers/{shopper_id}/identities"): (IdentityLink,),
    ("POST", "/v1/shoppers/{shopper_id}/devices"): (DeviceIn,),
    ("POST", "/v1/shoppers/{shopper_id}/events"): (ShopperEventIn,),
    ("POST", "/v1/notifications/{notification_id}/receipts"): (ReceiptIn,),
    ("POST", "/v1/presence/checkins"): (CheckinIn,),
    ("POST", "/v1/webhooks/carts"): (CartWebhook,),
    ("POST", "/v1/webhooks/shopify"): (ShopifyOrder, Checkout),
}

# Callers that may present credentials of another store or role: these answer 403 as well.
# (The shopper app's signature is its own shopper's or not valid: 401.)
_SCOPED = {ADMIN, STORE_STAFF, ANY_STAFF, TILL, INTEGRATION, SHOPPER_APP_OR_ADMIN}
# Dependencies that hand a handler the raw body, which it validates itself (422 when invalid).
_BODY_READERS: set[Callable[..., Any]] = {raw_body, signed_body}
_MAY_BE_DISABLED = {ADMIN, CART_WEBHOOK, SHOPIFY_WEBHOOK}


class ProblemError(BaseModel):
    """One field that failed validation, as FastAPI locates it."""

    loc: list[str | int] = Field(description='where: ["body", "consent", "personal_offers"]')
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document; every 4xx and 5xx answer of the API is one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "no store 'store-9'",
                    "instance": "/v1/stores/store-9",
                },
                {
                    "type": "about:blank",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "invalid request: query.limit: Input should be less than or "
                    "equal to 500",
                    "instance": "/v1/visits",
                    "errors": [
                        {
                            "loc": ["query", "limit"],
                            "msg": "Input should be less than or equal to 500",
                            "type": "less_than_equal",
                        }
                    ],
                },
            ]
        }
    )

    type: str = Field(default="about:blank", description="a URI naming the kind of problem")
    title: str = Field(description="the status code's phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what went wrong with this request, precisely")
    instance: str = Field(description="the path of the request")
    errors: list[ProblemError] | None = Field(
        default=None, description="for 422: each field that failed validation"
    )


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

_WHEN = {
    400: "The request cannot be served as sent.",
    401: "No credentials, or credentials (token, key, signature) that are not valid.",
    403: "Valid credentials that may not do this (another store, not the administrator).",
    404: "Nothing has the id in the path.",
    409: "It conflicts with what exists (a duplicate id, an identity already linked).",
    410: "It is gone (expired).",
    422: "The request failed validation; `errors` says where.",
    500: "The server failed; the error is in its log.",
    503: "This part of the API is not configured on this server.",
}


def problem_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of a problem with ``status``."""
    return {
        "description": _WHEN.get(status, "A problem."),
        "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` mapping for a route decorator: each status as a problem document."""
    return {status: problem_response(status) for status in statuses}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def callers_of(method: str, path: str, dependant: Dependant) -> str | None:
    """Who may call ``method path``, or None when nobody has said."""
    calls = set(_calls(dependant))
    for dependency, callers in _BY_DEPENDENCY:
        if dependency in calls:
            return callers
    return IN_HANDLER_CALLERS.get((method, path))


def _statuses(
    operation: dict[str, Any], path: str, callers: str | None, reads_body: bool
) -> set[int]:
    statuses = {500}
    statuses.update(int(code) for code in operation.get("responses", {}) if code[0] in "45")
    if operation.get("parameters") or "requestBody" in operation or reads_body:
        statuses.add(422)
    if "{" in path:
        statuses.add(404)
    if callers is not None and callers != ANYONE:
        statuses.add(401)
        if callers in _SCOPED:
            statuses.add(403)
        if callers in _MAY_BE_DISABLED:
            statuses.add(503)
    return statuses


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, Dependant]]:
    """Each documented operation of ``app``: method, full path (with router prefixes), and its
    dependency tree."""
    for context in routing.iter_route_contexts(app.routes):
        path = context.path_format
        documented = isinstance(context.original_route, routing.APIRoute) and (
            context.include_in_schema
        )
        if documented and path is not None:
            for method in context.methods or ():
                yield method, path, context.dependant


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """A reference to ``model``'s schema, added (with what it refers to) where missing."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _raw_body(models: tuple[type[BaseModel], ...], schemas: dict[str, Any]) -> dict[str, Any]:
    refs = [_schema_ref(model, schemas) for model in models]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def complete(app: FastAPI, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with callers in each description and every error as a ``Problem``."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _schema_ref(Problem, schemas)
    for method, path, dependant in api_routes(app):
        operation = spec["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue
        callers = callers_of(method, path, dependant)
        raw = RAW_BODIES.get((method, path))
        if raw is not None:
            operation["requestBody"] = _raw_body(raw, schemas)
        if callers is not None:
            description = operation.get("description", "").rstrip()
            operation["description"] = f"{description}\n\n**Who may call:** {callers}.".lstrip()
        responses = operation.setdefault("responses", {})
        reads_body = not _BODY_READERS.isdisjoint(_calls(dependant))
        for status in sorted(_statuses(operation, path, callers, reads_body)):
            declared = responses.get(str(status), {}).get("description")
            response = problem_response(status)
            if declared and status != 422:
                # What the route said of this status is more precise than the generic text.
                response["description"] = declared
            responses[str(status)] = response
    # FastAPI's own 422 body, which the problem handler replaced.
    for name in ("HTTPValidationError", "ValidationError"):
        if not _refers(spec["paths"], name):
            schemas.pop(name, None)
    return spec


def _refers(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == f"#/components/schemas/{name}" or any(
            _refers(value, name) for value in node.values()
        )
    if isinstance(node, list):
        return any(_refers(value, name) for value in node)
    return False


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json; FastAPI caches it until routes change."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        spec = generate()
        if "Problem" not in spec.get("components", {}).get("schemas", {}):
            complete(app, spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
