"""Request and response bodies of logins, staff accounts and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from storelink.wire import Identifier


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"


class LoginIn(_Request):
    # The dashboard's form calls it a user name.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "anna@store1.example.com", "password": "correct horse battery"}]
        }
    )

    email: str = Field(
        pattern=EMAIL_PATTERN,
        max_length=254,
        validation_alias=AliasChoices("email", "username"),
    )
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "sls_kQ2vX9mB7yTzR4pL8sN1cE5uH3wJ6aD0fG2iK4oM7qS",
                    "token_type": "bearer",
                    "expires_at": "2026-11-25T03:42:07Z",
                    "store_ids": ["store-1"],
                }
            ]
        }
    )

    access_token: str = Field(description="send as Authorization: Bearer <access_token>")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_at: datetime
    store_ids: list[str]


class WhoAmI(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"admin": False, "email": "anna@store1.example.com", "store_ids": ["store-1"]},
                {"admin": True, "email": None, "store_ids": None},
            ]
        }
    )

    admin: bool
    email: str | None
    store_ids: list[str] | None = Field(description="null: every store (the admin)")


class StaffCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "anna@store1.example.com",
                    "password": "correct horse battery",
                    "store_ids": ["store-1"],
                }
            ]
        }
    )

    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(min_length=10, max_length=1024)
    store_ids: list[Identifier] = Field(min_length=1, description="the stores they may see")


class StaffOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "email": "anna@store1.example.com",
                    "store_ids": ["store-1"],
                    "created_at": "2026-11-24T15:42:07Z",
                }
            ]
        }
    )

    id: int
    email: str
    store_ids: list[str]
    created_at: datetime


class ApiKeyCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "till 3", "store_ids": ["store-1"]}]}
    )

    name: str = Field(min_length=1, max_length=200, description="what uses it: 'till 3', 'shop'")
    store_ids: list[Identifier] = Field(min_length=1, description="the stores it may act for")


_API_KEY_EXAMPLE: dict[str, Any] = {
    "id": 2,
    "name": "till 3",
    "prefix": "slk_Xw3f",
    "store_ids": ["store-1"],
    "created_at": "2026-11-24T15:42:07Z",
    "revoked_at": None,
}


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_API_KEY_EXAMPLE]})

    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    store_ids: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_API_KEY_EXAMPLE,
                    "key": "slk_Xw3fH8nQ2rT5vY9bC4mK7pL1sD6gJ0zA3eU8iO5wR2t",
                }
            ]
        }
    )

    key: str = Field(description="send as X-API-Key; shown this once, stored only as a hash")
