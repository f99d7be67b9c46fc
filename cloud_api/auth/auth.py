"""Who is calling: the administrator, a staff member scoped to stores, or an integration's key.

Staff and admin endpoints take ``Authorization: Bearer <token>``, where the token is either the
configured ``admin_token`` (every store, and the admin endpoints) or a staff member's login token
from ``POST /v1/auth/login`` (the staff member's stores only: 403 elsewhere). Integrations (a
till, an e-commerce platform) send ``X-API-Key``, a key the admin created for some stores.

Nothing secret is stored as such: passwords as scrypt hashes, login tokens and API keys (random,
256 bits) as their SHA-256, which is enough for a secret nobody can guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Header, HTTPException, status
from sqlalchemy.orm import Session

from cloud_api.deps import ContextDep
from cloud_api.store.models import ApiKey, ApiKeyStore, StaffAccount, StaffStore, StaffToken
from storelink.wire import utc_now

STAFF_TOKEN_PREFIX = "sls_"  # noqa: S105 (a prefix, not a secret)
API_KEY_PREFIX = "slk_"
API_KEY_HEADER = "X-API-Key"
# scrypt's cost: 16 MiB and about 50 ms a login on a server, far more for a guesser.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_LEN = 32
ADMIN_UNSET_DETAIL = (
    "no admin token is configured: set STORELINK_ADMIN_TOKEN (or admin_token in the cloud's "
    "YAML file) to a long random string, e.g. `openssl rand -hex 32`, and restart the cloud"
)


# --- secrets ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), what ``verify_password`` checks."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when the e-mail is unknown, so that a wrong e-mail takes as long as a wrong
# password and the timing does not tell which accounts exist.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


# --- principals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffPrincipal:
    """The caller of a staff endpoint; ``store_ids`` None is the administrator (every store)."""

    store_ids: frozenset[str] | None
    staff_id: int | None = None
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.store_ids is None

    def may_access(self, store_id: str) -> bool:
        return self.store_ids is None or store_id in self.store_ids


@dataclass(frozen=True)
class IntegrationPrincipal:
    """An integration calling with its API key, for the stores the key was created for."""

    api_key_id: int
    name: str
    store_ids: frozenset[str]

    def may_access(self, store_id: str) -> bool:
        return store_id in self.store_ids


def check_store(principal: StaffPrincipal | IntegrationPrincipal, store_id: str) -> None:
    """403 unless ``principal`` may act for ``store_id``."""
    if not principal.may_access(store_id):
        who = (
            f"API key {principal.name!r}"
            if isinstance(principal, IntegrationPrincipal)
            else (principal.email or "this account")
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who} has no access to store {store_id!r}")


# --- staff accounts and logins ------------------------------------------------------------------


def staff_store_ids(session: Session, staff_id: int) -> frozenset[str]:
    return frozenset(
        session.scalars(sa.select(StaffStore.store_id).where(StaffStore.staff_id == staff_id))
    )


def create_staff(
    session: Session, email: str, password: str, store_ids: Iterable[str], now: datetime
) -> StaffAccount:
    """Add the account (the caller commits); IntegrityError when the e-mail is taken."""
    account = StaffAccount(
        email=email.lower(), password_hash=hash_password(password), created_at=now
    )
    session.add(account)
    session.flush()
    session.add_all(StaffStore(staff_id=account.id, store_id=s) for s in sorted(set(store_ids)))
    session.flush()
    return account


def login(
    session: Session, email: str, password: str, now: datetime, ttl: timedelta
) -> tuple[str, StaffAccount, StaffToken] | None:
    """A new token for the account, or None when the e-mail or the password is wrong."""
    account = session.scalars(
        sa.select(StaffAccount).where(StaffAccount.email == email.lower())
    ).one_or_none()
    if not verify_password(password, account.password_hash if account else _DUMMY_HASH):
        return None
    if account is None:
        return None
    session.execute(
        sa.delete(StaffToken).where(StaffToken.staff_id == account.id, StaffToken.expires_at <= now)
    )
    token = new_secret(STAFF_TOKEN_PREFIX)
    row = StaffToken(
        token_hash=token_digest(token), staff_id=account.id, created_at=now, expires_at=now + ttl
    )
    session.add(row)
    session.commit()
    return token, account, row


def create_api_key(
    session: Session, name: str, store_ids: Iterable[str], now: datetime
) -> tuple[str, ApiKey]:
    """A new key (returned once, the caller commits) and its stored row."""
    key = new_secret(API_KEY_PREFIX)
    row = ApiKey(
        key_hash=token_digest(key), prefix=key[:12], name=name, created_at=now, revoked_at=None
    )
    session.add(row)
    session.flush()
    session.add_all(ApiKeyStore(api_key_id=row.id, store_id=s) for s in sorted(set(store_ids)))
    session.flush()
    return key, row


def api_key_store_ids(session: Session, api_key_id: int) -> frozenset[str]:
    return frozenset(
        session.scalars(sa.select(ApiKeyStore.store_id).where(ApiKeyStore.api_key_id == api_key_id))
    )


# --- FastAPI dependencies -----------------------------------------------------------------------


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_token(
    authorization: Annotated[
        str | None,
        Header(description="Bearer <admin token or staff token from POST /v1/auth/login>"),
    ] = None,
) -> str:
    if authorization is None:
        raise _unauthorised("send Authorization: Bearer <token> (admin or staff login token)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorised("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _is_admin_token(context: ContextDep, token: str) -> bool:
    admin = context.settings.admin_token
    return admin is not None and hmac.compare_digest(
        token.encode(), admin.get_secret_value().encode()
    )


def authenticate_staff(
    token: Annotated[str, Depends(bearer_token)], context: ContextDep
) -> StaffPrincipal:
    """The admin or a logged-in staff member; 401 otherwise."""
    if _is_admin_token(context, token):
        return StaffPrincipal(store_ids=None)
    # A session of its own: the route's session starts its transaction as the route needs it
    # (as a writer from the start, on SQLite, where it writes).
    with context.sessions() as session:
        row = session.execute(
            sa.select(StaffToken.staff_id, StaffToken.expires_at, StaffAccount.email)
            .join(StaffAccount, StaffAccount.id == StaffToken.staff_id)
            .where(StaffToken.token_hash == token_digest(token))
        ).first()
        if row is None:
            raise _unauthorised("unknown token: log in again (POST /v1/auth/login)")
        if row.expires_at <= utc_now():
            raise _unauthorised("the token has expired: log in again (POST /v1/auth/login)")
        store_ids = staff_store_ids(session, row.staff_id)
    return StaffPrincipal(store_ids=store_ids, staff_id=row.staff_id, email=row.email)


StaffDep = Annotated[StaffPrincipal, Depends(authenticate_staff)]


def require_admin_configured(context: ContextDep) -> None:
    if context.settings.admin_token is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, ADMIN_UNSET_DETAIL)


def require_admin(
    _configured: Annotated[None, Depends(require_admin_configured)],
    token: Annotated[str, Depends(bearer_token)],
    context: ContextDep,
) -> StaffPrincipal:
    """The administrator only: 503 while no admin token is configured, 401 for another token."""
    if not _is_admin_token(context, token):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN
            if token.startswith(STAFF_TOKEN_PREFIX)
            else status.HTTP_401_UNAUTHORIZED,
            "this endpoint needs the admin token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return StaffPrincipal(store_ids=None)


AdminDep = Annotated[StaffPrincipal, Depends(require_admin)]


def require_store(store_id: str, principal: StaffDep) -> StaffPrincipal:
    """The caller, who may see ``store_id`` (a path or query parameter of the endpoint)."""
    check_store(principal, store_id)
    return principal


StoreStaffDep = Annotated[StaffPrincipal, Depends(require_store)]


def require_integration(
    context: ContextDep,
    x_api_key: Annotated[
        str | None, Header(description="an integration's key, from POST /v1/api-keys")
    ] = None,
) -> IntegrationPrincipal:
    if x_api_key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"send the {API_KEY_HEADER} header")
    with context.sessions() as session:
        row = session.scalars(
            sa.select(ApiKey).where(ApiKey.key_hash == token_digest(x_api_key))
        ).one_or_none()
        if row is None or row.revoked_at is not None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, f"{API_KEY_HEADER}: unknown or revoked key"
            )
        return IntegrationPrincipal(row.id, row.name, api_key_store_ids(session, row.id))


IntegrationDep = Annotated[IntegrationPrincipal, Depends(require_integration)]


def authenticate_caller(
    context: ContextDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> StaffPrincipal | IntegrationPrincipal:
    """Staff (bearer token) or an integration (API key), for what a till does either way."""
    if x_api_key is not None:
        return require_integration(context, x_api_key)
    return authenticate_staff(bearer_token(authorization), context)


CallerDep = Annotated[StaffPrincipal | IntegrationPrincipal, Depends(authenticate_caller)]
