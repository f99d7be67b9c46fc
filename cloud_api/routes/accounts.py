"""Logins, staff accounts and integrations' API keys."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, status
from sqlalchemy.exc import IntegrityError

from cloud_api.auth.auth import (
    AdminDep,
    StaffDep,
    api_key_store_ids,
    create_api_key,
    create_staff,
    login,
    staff_store_ids,
)
from cloud_api.auth.auth_schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginIn,
    LoginOut,
    StaffCreate,
    StaffOut,
    WhoAmI,
)
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.fleet.stores import require_stores_exist
from cloud_api.store.models import ApiKey, StaffAccount, StaffToken
from storelink.wire import utc_now

router = APIRouter(tags=["auth"])


@router.post("/auth/login", responses={401: {"description": "wrong e-mail or password"}})
def log_in(body: LoginIn, session: SessionDep, context: ContextDep) -> LoginOut:
    """A staff member's bearer token, valid for ``staff_token_ttl_s``."""
    ttl = timedelta(seconds=context.settings.staff_token_ttl_s)
    result = login(session, body.email, body.password, utc_now(), ttl)
    if result is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong e-mail or password")
    token, account, row = result
    return LoginOut(
        access_token=token,
        expires_at=row.expires_at,
        store_ids=sorted(staff_store_ids(session, account.id)),
    )


@router.get("/auth/me")
def who_am_i(principal: StaffDep) -> WhoAmI:
    """The caller as the API sees it: administrator or staff, and the stores they may see."""
    store_ids = None if principal.store_ids is None else sorted(principal.store_ids)
    return WhoAmI(admin=principal.is_admin, email=principal.email, store_ids=store_ids)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def log_out(principal: StaffDep, session: SessionDep) -> None:
    """End every login of the calling staff member (the admin token cannot be logged out)."""
    if principal.staff_id is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the admin token has no login to end")
    session.execute(sa.delete(StaffToken).where(StaffToken.staff_id == principal.staff_id))
    session.commit()


@router.post(
    "/staff",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "e-mail taken"}, 422: {"description": "unknown store"}},
)
def add_staff(body: StaffCreate, _admin: AdminDep, session: SessionDep) -> StaffOut:
    """A staff account that may see the given stores; it logs in with its e-mail and password."""
    require_stores_exist(session, body.store_ids)
    try:
        account = create_staff(session, body.email, body.password, body.store_ids, utc_now())
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a staff account with e-mail {body.email!r} exists"
        ) from None
    return _staff_out(session, account)


@router.get("/staff")
def list_staff(_admin: AdminDep, session: SessionDep) -> list[StaffOut]:
    """Every staff account, by e-mail, with the stores each may see."""
    accounts = session.scalars(sa.select(StaffAccount).order_by(StaffAccount.email))
    return [_staff_out(session, account) for account in accounts]


def _staff_out(session: SessionDep, account: StaffAccount) -> StaffOut:
    return StaffOut(
        id=account.id,
        email=account.email,
        store_ids=sorted(staff_store_ids(session, account.id)),
        created_at=account.created_at,
    )


@router.post("/api-keys", status_code=status.HTTP_201_CREATED)
def add_api_key(body: ApiKeyCreate, _admin: AdminDep, session: SessionDep) -> ApiKeyCreated:
    """A key for an integration; the reply is the only place the key ever appears."""
    require_stores_exist(session, body.store_ids)
    key, row = create_api_key(session, body.name, body.store_ids, utc_now())
    session.commit()
    return ApiKeyCreated(key=key, **_api_key_out(session, row).model_dump())


@router.get("/api-keys")
def list_api_keys(_admin: AdminDep, session: SessionDep) -> list[ApiKeyOut]:
    """Every integration key, revoked ones included; never the key itself."""
    keys = session.scalars(sa.select(ApiKey).order_by(ApiKey.id))
    return [_api_key_out(session, key) for key in keys]


@router.delete(
    "/api-keys/{api_key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such key"}},
)
def revoke_api_key(api_key_id: int, _admin: AdminDep, session: SessionDep) -> None:
    """Revoke a key at once; calls that present it answer 401 from then on."""
    key = session.get(ApiKey, api_key_id)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {api_key_id}")
    if key.revoked_at is None:
        key.revoked_at = utc_now()
        session.commit()


def _api_key_out(session: SessionDep, key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        store_ids=sorted(api_key_store_ids(session, key.id)),
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )
