"""Staff logins scoped to stores, the admin token, integrations' API keys, problem documents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_api.api.problems import PROBLEM_JSON
from cloud_api.app import create_app
from cloud_api.auth.auth import IntegrationDep, check_store, hash_password, verify_password
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.store.models import ApiKey, StaffAccount, StaffToken
from storelink.wire import utc_now
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN

PASSWORD = "correct horse battery"


def make_app(database_url: str, **overrides: Any) -> FastAPI:
    settings = CloudSettings(
        database_url=database_url, mqtt_enabled=False, admin_token=ADMIN_TOKEN, **overrides
    )
    app = create_app(settings)

    # An integration's endpoint, as a till's would be: the key's stores only.
    @app.get("/test/integration/{store_id}")
    def integration_only(store_id: str, caller: IntegrationDep) -> dict[str, str]:
        check_store(caller, store_id)
        return {"name": caller.name}

    @app.get("/test/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(make_app(database_url), raise_server_exceptions=False) as client:
        yield client


def create_store(client: TestClient, store_id: str) -> None:
    response = client.post(
        "/v1/stores", json={"store_id": store_id, "name": store_id.title()}, headers=ADMIN_HEADERS
    )
    assert response.status_code == 201, response.text


def create_staff(client: TestClient, email: str, store_ids: list[str]) -> dict[str, Any]:
    response = client.post(
        "/v1/staff",
        json={"email": email, "password": PASSWORD, "store_ids": store_ids},
        headers=ADMIN_HEADERS,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and first.startswith("scrypt$")
    assert verify_password(PASSWORD, first)
    assert not verify_password(PASSWORD + "!", first)
    assert not verify_password(PASSWORD, "not-a-hash")


def test_staff_of_one_store_is_refused_another(client: TestClient, database_url: str) -> None:
    create_store(client, "store-a")
    create_store(client, "store-b")
    staff = create_staff(client, "Ann@Example.com", ["store-a"])
    assert staff["email"] == "ann@example.com" and staff["store_ids"] == ["store-a"]

    answer = client.post("/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert answer.status_code == 200
    body = answer.json()
    assert body["store_ids"] == ["store-a"] and body["token_type"] == "bearer"
    assert "expires_at" in body
    headers = {"Authorization": f"Bearer {body['access_token']}"}

    assert client.get("/v1/stores/store-a", headers=headers).status_code == 200
    refused = client.get("/v1/stores/store-b", headers=headers)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert "store-b" in refused.json()["detail"]
    assert (
        client.get("/v1/visits", params={"store_id": "store-b"}, headers=headers).status_code == 403
    )
    assert (
        client.get("/v1/visits", params={"store_id": "store-a"}, headers=headers).status_code == 200
    )
    refused_gateways = client.get("/v1/gateways", params={"store_id": "store-b"}, headers=headers)
    assert refused_gateways.status_code == 403
    assert client.get("/v1/gateways", headers=headers).json() == []
    assert client.get("/v1/stats/summary", headers=headers).status_code == 403
    listed = client.get("/v1/stores", headers=headers).json()
    assert [s["store_id"] for s in listed["items"]] == ["store-a"]
    me = client.get("/v1/auth/me", headers=headers).json()
    assert me == {"admin": False, "email": "ann@example.com", "store_ids": ["store-a"]}

    # Staff cannot act as the admin.
    assert (
        client.post(
            "/v1/stores", json={"store_id": "store-c", "name": "C"}, headers=headers
        ).status_code
        == 403
    )
    assert client.get("/v1/staff", headers=headers).status_code == 403

    # Tokens are stored hashed: the database never holds the bearer token itself.
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        stored = connection.execute(sa.select(StaffToken.token_hash)).scalars().all()
        password_hash = connection.execute(sa.select(StaffAccount.password_hash)).scalar_one()
    engine.dispose()
    token = body["access_token"]
    assert token not in stored and len(stored) == 1
    assert PASSWORD not in password_hash and password_hash.startswith("scrypt$")

    client.post("/v1/auth/logout", headers=headers)
    assert client.get("/v1/stores/store-a", headers=headers).status_code == 401


def test_wrong_credentials_and_tokens_are_refused(client: TestClient) -> None:
    create_store(client, "store-a")
    create_staff(client, "bo@example.com", ["store-a"])
    for email, password in (("bo@example.com", "wrong password"), ("nobody@example.com", PASSWORD)):
        response = client.post("/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 401
        assert response.json()["detail"] == "wrong e-mail or password"
    assert client.get("/v1/visits", params={"store_id": "store-a"}).status_code == 401
    bad = client.get(
        "/v1/visits", params={"store_id": "store-a"}, headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    basic = client.get("/v1/stats/summary", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    # The admin sees every store and the admin endpoints.
    assert client.get("/v1/stats/summary", headers=ADMIN_HEADERS).status_code == 200
    assert client.get("/v1/staff", headers=ADMIN_HEADERS).json()[0]["email"] == "bo@example.com"


def test_duplicate_staff_and_unknown_store_are_refused(client: TestClient) -> None:
    create_store(client, "store-a")
    create_staff(client, "cy@example.com", ["store-a"])
    again = client.post(
        "/v1/staff",
        json={"email": "CY@example.com", "password": PASSWORD, "store_ids": ["store-a"]},
        headers=ADMIN_HEADERS,
    )
    assert again.status_code == 409
    unknown = client.post(
        "/v1/staff",
        json={"email": "di@example.com", "password": PASSWORD, "store_ids": ["store-z"]},
        headers=ADMIN_HEADERS,
    )
    assert unknown.status_code == 422 and "store-z" in unknown.json()["detail"]


def test_expired_login_is_refused(database_url: str) -> None:
    app = make_app(database_url, staff_token_ttl_s=60)
    with TestClient(app) as client:
        create_store(client, "store-a")
        create_staff(client, "ed@example.com", ["store-a"])
        headers = login(client, "ed@example.com")
        assert client.get("/v1/stores/store-a", headers=headers).status_code == 200
        context: CloudContext = app.state.context
        with context.sessions() as session:
            session.execute(
                sa.update(StaffToken).values(expires_at=utc_now() - timedelta(seconds=1))
            )
            session.commit()
        expired = client.get("/v1/stores/store-a", headers=headers)
        assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_admin_endpoints_answer_503_without_an_admin_token(database_url: str) -> None:
    settings = CloudSettings(database_url=database_url, mqtt_enabled=False)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/stores", json={"store_id": "s", "name": "S"}, headers=ADMIN_HEADERS
        )
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_JSON
        assert "STORELINK_ADMIN_TOKEN" in response.json()["detail"]
        assert client.get("/v1/stats/summary", headers=ADMIN_HEADERS).status_code == 503
        # Staff endpoints still take staff tokens; the admin's is just unknown.
        visits = client.get("/v1/visits", params={"store_id": "s"}, headers=ADMIN_HEADERS)
        assert visits.status_code == 401


def test_api_keys_are_shown_once_stored_hashed_and_scoped(
    client: TestClient, database_url: str
) -> None:
    create_store(client, "store-a")
    create_store(client, "store-b")
    created = client.post(
        "/v1/api-keys", json={"name": "till 1", "store_ids": ["store-a"]}, headers=ADMIN_HEADERS
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert created.json()["store_ids"] == ["store-a"]
    listed = client.get("/v1/api-keys", headers=ADMIN_HEADERS).json()
    assert "key" not in listed[0] and key.startswith(listed[0]["prefix"])

    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        stored = connection.execute(sa.select(ApiKey.key_hash)).scalar_one()
    engine.dispose()
    assert stored != key and key not in stored

    ok = client.get("/test/integration/store-a", headers={"X-API-Key": key})
    assert ok.status_code == 200 and ok.json() == {"name": "till 1"}
    assert client.get("/test/integration/store-b", headers={"X-API-Key": key}).status_code == 403
    assert (
        client.get("/test/integration/store-a", headers={"X-API-Key": "slk_x"}).status_code == 401
    )
    assert client.get("/test/integration/store-a").status_code == 401
    # A key is not a staff token, and the admin token is not a key.
    assert (
        client.get("/v1/stats/summary", headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )

    key_id = created.json()["id"]
    assert client.delete(f"/v1/api-keys/{key_id}", headers=ADMIN_HEADERS).status_code == 204
    revoked = client.get("/test/integration/store-a", headers={"X-API-Key": key})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_errors_are_problem_documents(client: TestClient) -> None:
    invalid = client.post(
        "/v1/stores",
        json={"store_id": "has space", "name": "", "unexpected": 1},
        headers=ADMIN_HEADERS,
    )
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == PROBLEM_JSON
    problem = invalid.json()
    assert problem["type"] == "about:blank"
    assert problem["title"] == "Unprocessable Content" or problem["title"] == "Unprocessable Entity"
    assert problem["status"] == 422 and problem["instance"] == "/v1/stores"
    failing = {tuple(error["loc"]) for error in problem["errors"]}
    assert failing == {("body", "store_id"), ("body", "name"), ("body", "unexpected")}
    assert "body.store_id" in problem["detail"]

    missing = client.get("/v1/stores/nowhere", headers=ADMIN_HEADERS)
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM_JSON
    assert missing.json()["detail"] == "no store 'nowhere'"

    no_route = client.get("/v1/no-such-thing")
    assert no_route.status_code == 404 and no_route.headers["content-type"] == PROBLEM_JSON

    crash = client.get("/test/crash")
    assert crash.status_code == 500 and crash.headers["content-type"] == PROBLEM_JSON
    assert "secret internals" not in crash.text
    assert crash.json()["instance"] == "/test/crash"
