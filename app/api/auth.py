"""API keys, off unless ``LANDMARKS_API_KEYS`` or ``LANDMARKS_API_KEYS_FILE`` names some.

A client sends its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are kept only as
SHA-256 digests and compared in constant time; the access log names a key by the first characters of
its digest (``key_id``), never by the key. The check is a dependency of the protected routers, so it
runs before a route reads the body.
"""

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.errors import ApiError
from app.api.schemas import ErrorResponse
from app.config import Settings

# Hex characters of a key's SHA-256 digest that name it in the access log.
KEY_ID_LENGTH = 8

BEARER = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <key>`, a service API key."
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="The same key in `X-API-Key`."
)

# Documented on the protected routes when keys are on.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorResponse,
        "description": "unauthorized: no API key, or an unknown one (with WWW-Authenticate: Bearer)",
    }
}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """The name of a key in the logs: ``printf %s KEY | sha256sum | cut -c1-8``."""
    return _digest(key).hex()[:KEY_ID_LENGTH]


class ApiKeys:
    """The accepted keys, as digests. Empty (false) when keys are off."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, key: str) -> bool:
        """Compared with every known key, each in constant time, so the timing tells nothing about
        which key (or how much of one) matched."""
        presented = _digest(key)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(known, presented)
        return found


def read_keys_file(path: str) -> list[str]:
    """One key per line; blank lines and lines starting with ``#`` are skipped."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    return [line for line in lines if line and not line.startswith("#")]


def load_api_keys(settings: Settings) -> ApiKeys:
    """The keys of ``LANDMARKS_API_KEYS`` and ``LANDMARKS_API_KEYS_FILE`` together. A keys file that
    cannot be read or holds no key stops start-up: a missing secret must not turn the keys off."""
    keys = [secret.get_secret_value() for secret in settings.api_keys]
    if settings.api_keys_file is not None:
        try:
            from_file = read_keys_file(str(settings.api_keys_file))
        except (OSError, UnicodeDecodeError) as exc:
            raise RuntimeError(
                f"cannot read LANDMARKS_API_KEYS_FILE {settings.api_keys_file}: {exc}"
            ) from exc
        if not from_file:
            raise RuntimeError(f"LANDMARKS_API_KEYS_FILE {settings.api_keys_file} holds no key")
        keys.extend(from_file)
    return ApiKeys(keys)


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    header_key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> None:
    """401 ``unauthorized`` unless one of the two headers carries a known key."""
    keys: ApiKeys = request.app.state.service.api_keys
    presented = [key for key in (bearer.credentials if bearer else None, header_key) if key]
    if not presented:
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            {"WWW-Authenticate": "Bearer"},
        )
    accepted = [key for key in presented if keys.accepts(key)]
    if not accepted:
        raise ApiError(
            401,
            "unauthorized",
            "the API key is not valid",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    request.state.api_key_id = key_id(accepted[0])
