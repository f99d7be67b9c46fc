"""The cloud API's OpenAPI document: complete, with examples that are valid, and every error
declared as an RFC 9457 problem document."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from pydantic import BaseModel, TypeAdapter

import cloud_api
from cloud_api.api.openapi_docs import ANYONE, Problem, api_routes, callers_of
from cloud_api.api.problems import PROBLEM_JSON
from cloud_api.app import create_app
from cloud_api.auth.app_auth import raw_body
from cloud_api.config import CloudSettings
from cloud_api.routes.webhooks import signed_body
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("openapi") / "cloud.db"
    return create_app(
        CloudSettings(database_url=f"sqlite:///{db}", mqtt_enabled=False, admin_token=ADMIN_TOKEN)
    )


@pytest.fixture(scope="module")
def spec(app: Any) -> dict[str, Any]:
    document: dict[str, Any] = app.openapi()
    return document


def _operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _schema(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_served_document_is_the_completed_one(app: Any, spec: dict[str, Any]) -> None:
    with TestClient(app) as client:
        served = client.get("/openapi.json").json()
    assert served["components"]["schemas"]["Problem"] == spec["components"]["schemas"]["Problem"]
    assert served["paths"] == spec["paths"]


def test_every_operation_says_what_it_does_and_who_may_call_it(
    app: Any, spec: dict[str, Any]
) -> None:
    operations = list(_operations(spec))
    assert len(operations) >= 50
    for method, path, operation in operations:
        description = operation.get("description", "")
        what, _, who = description.partition("**Who may call:**")
        assert what.strip(), f"{method} {path}: no docstring"
        assert who.strip(), f"{method} {path}: nobody says who may call it"


def test_callers_are_known_for_every_route(app: Any) -> None:
    routes = list(api_routes(app))
    assert len(routes) >= 50
    for method, path, dependant in routes:
        assert callers_of(method, path, dependant), (
            f"{method} {path}: add it to IN_HANDLER_CALLERS or give it an authentication dependency"
        )


def _problem_statuses(operation: dict[str, Any]) -> set[int]:
    statuses = set()
    for code, response in operation["responses"].items():
        if code[0] in "45":
            assert set(response["content"]) == {PROBLEM_JSON}, code
            assert response["content"][PROBLEM_JSON]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
            statuses.add(int(code))
    return statuses


def test_every_operation_declares_its_errors_as_problems(spec: dict[str, Any]) -> None:
    for method, path, operation in _operations(spec):
        statuses = _problem_statuses(operation)
        where = f"{method} {path}"
        assert 500 in statuses, where
        if "{" in path:
            assert 404 in statuses, where
        if operation.get("parameters") or "requestBody" in operation:
            assert 422 in statuses, where
        if f"**Who may call:** {ANYONE}" not in operation["description"]:
            assert {401, 403} & statuses, where
    schema = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(schema["properties"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_declared_unauthenticated_answer_is_a_problem(app: Any, spec: dict[str, Any]) -> None:
    """Without credentials, what the document says answers 401 does, as a problem document."""
    checked = 0
    with TestClient(app) as client:
        for method, path, operation in _operations(spec):
            if "401" not in operation["responses"] or "{" in path:
                continue
            if method != "GET" or "503" in operation["responses"]:
                continue
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            Problem.model_validate(response.json())
            checked += 1
    assert checked >= 10


def test_every_request_body_has_an_example(spec: dict[str, Any]) -> None:
    bodies = 0
    for method, path, operation in _operations(spec):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            for alternative in media["schema"].get("oneOf", [media["schema"]]):
                schema = _schema(spec, alternative["$ref"])
                assert schema.get("examples"), f"{method} {path}: {alternative['$ref']}"
                bodies += 1
    assert bodies >= 10


def test_bodies_read_raw_are_documented(app: Any, spec: dict[str, Any]) -> None:
    """A handler that checks a signature reads its body raw; the document still shows it."""
    raw = 0
    for method, path, dependant in api_routes(app):
        calls = set(_calls(dependant))
        if raw_body in calls or signed_body in calls:
            raw += 1
            assert "requestBody" in spec["paths"][path][method.lower()], f"{method} {path}"
    assert raw >= 7


def _calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _models() -> Iterator[type[BaseModel]]:
    for module in pkgutil.walk_packages(cloud_api.__path__, "cloud_api."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    seen: set[type[BaseModel]] = set()
    pending = list(BaseModel.__subclasses__())
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        pending.extend(model.__subclasses__())
        if model.__module__.startswith("cloud_api.") and "[" not in model.__name__:
            yield model


def test_every_example_validates_against_its_model() -> None:
    with_examples = 0
    for model in _models():
        own = model.__dict__.get("model_config", {}).get("json_schema_extra")
        if not isinstance(own, dict) or "examples" not in own:
            continue
        with_examples += 1
        for example in own["examples"]:
            model.model_validate(example)
        for field in model.model_fields.values():
            for value in field.examples or ():
                TypeAdapter(Annotated[field.annotation, *field.metadata]).validate_python(value)
    assert with_examples >= 25


def test_example_schemas_appear_in_the_document(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for name in ("LoginIn", "StoreCreate", "OrderWebhook", "Problem", "StoreOut"):
        assert schemas[name]["examples"], name


def test_null_for_a_store_setting_is_refused_not_stored(app: Any) -> None:
    """Found by fuzzing the document: a null calibration used to be stored, and every read of
    the store then answered 500."""
    with TestClient(app) as client:
        created = client.post(
            "/v1/stores", json={"store_id": "store-null", "name": "Null"}, headers=ADMIN_HEADERS
        )
        assert created.status_code == 201, created.text
        for field in ("calibration", "staff_beacons", "store_beacons", "name", "timezone"):
            refused = client.patch(
                "/v1/stores/store-null", json={field: None}, headers=ADMIN_HEADERS
            )
            assert refused.status_code == 422, (field, refused.text)
            assert refused.headers["content-type"] == PROBLEM_JSON
            assert refused.json()["errors"][0]["loc"] == ["body", field]
        kept = client.patch(
            "/v1/stores/store-null", json={"app_uuid": None, "name": "Kept"}, headers=ADMIN_HEADERS
        )
        assert kept.status_code == 200, kept.text
        read = client.get("/v1/stores/store-null", headers=ADMIN_HEADERS)
        assert read.status_code == 200, read.text
        assert read.json()["name"] == "Kept"
        assert read.json()["calibration"] == {"by_beacon": {}, "by_device_class": {}}
