"""Git credentials given in a URL (``https://user:token@host/repo.git``), kept out of the database
in clear.

A job records the URL without its userinfo and, beside it, the userinfo sealed with Fernet
(AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package) under a key derived with HKDF from
``CORRAL_SECRET_KEY``. Only the worker that runs the job unseals it, and hands it to ``git`` in an
``Authorization`` header through its environment (never the command line, never ``.git/config``).
A leaked database row is useless without the secret key; changing the secret key makes pending
jobs with a credential fail with a clear message.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from urllib.parse import unquote, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corral.core.config import get_settings
from corral.core.errors import IngestError

__all__ = ["auth_header", "seal", "split_credential", "unseal"]

_INFO = b"corral git credentials v1"


@lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(credential: str) -> str:
    """``credential`` encrypted under the deployment's secret key (text, safe to store)."""
    return _fernet(get_settings().secret_key.get_secret_value()).encrypt(credential.encode()).decode()


def unseal(token: str) -> str:
    """The credential :func:`seal` encrypted; an :class:`IngestError` when this process's secret key
    is not the one it was sealed with."""
    try:
        return _fernet(get_settings().secret_key.get_secret_value()).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise IngestError("cannot decrypt the git credential stored with this job: CORRAL_SECRET_KEY "
                          "is not the one it was submitted with; submit the ingest again") from None


def split_credential(url: str) -> tuple[str, str | None]:
    """``url`` without its secret, and the secret (``user[:password]``, percent-decoded) or ``None``.

    Over http(s) any userinfo is the credential (``https://TOKEN@host/...`` is common). Over ssh
    the user name is a login, not a secret, and stays; a password there is dropped (git runs ssh
    in batch mode, with keys only).
    """
    if "://" not in url:
        return url, None
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        user, sep, password = userinfo.partition(":")
        credential = unquote(user) + (sep + unquote(password) if sep else "")
        return urlunsplit(parts._replace(netloc=host)), credential or None
    if ":" in userinfo:
        return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}@{host}")), None
    return url, None


def auth_header(credential: str) -> str:
    """The HTTP ``Authorization`` header value for ``user[:password]`` (HTTP Basic)."""
    return "Authorization: Basic " + base64.b64encode(credential.encode()).decode()
