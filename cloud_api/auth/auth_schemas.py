"""Request and response bodies of logins, staff accounts and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from storelink.wire import Identifier


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"


class LoginIn(_Request):
    # The dashboard's form calls it a user name.
    email: str = Field(
        pattern=EMAIL_PATTERN,
        max_length=254,
        validation_alias=AliasChoices("email", "username"),
    )
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    access_token: str = Field(description="send as Authorization: Bearer <access_token>")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_at: datetime
    store_ids: list[str]


class WhoAmI(BaseModel):
    admin: bool
    email: str | None
    store_ids: list[str] | None = Field(description="null: every store (the admin)")


class StaffCreate(_Request):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(min_length=10, max_length=1024)
    store_ids: list[Identifier] = Field(min_length=1, description="the stores they may see")


class StaffOut(BaseModel):
    id: int
    email: str
    store_ids: list[str]
    created_at: datetime


class ApiKeyCreate(_Request):
    name: str = Field(min_length=1, max_length=200, description="what uses it: 'till 3', 'shop'")
    store_ids: list[Identifier] = Field(min_length=1, description="the stores it may act for")


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    store_ids: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="send as X-API-Key; shown this once, stored only as a hash")
