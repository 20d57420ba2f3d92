"""Column master keys in a PKCS#11 token (an HSM, a smart card, SoftHSM2 in tests).

Keys are generated on the token as non-extractable, sensitive RSA key pairs; decryption
(``CKM_RSA_PKCS_OAEP`` with SHA-1/MGF1-SHA-1) and signing (``CKM_SHA256_RSA_PKCS``) happen
on the token. Only the public key (modulus and exponent) is ever read out. The key path is
the key's ``CKA_LABEL`` (lower-cased letters, digits, ``.``, ``_``, ``-``; also its
``CKA_ID``).

The module is loaded by its real path (symbolic links resolved), once per process; code
that loads the same module under another path in the same process cannot share it.

A PKCS#11 login belongs to the whole process, not to one session, so stores opened on the
same token in one process share one logged-in session; a second store must present the
same PIN (compared in constant time) or it is refused.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import pkcs11
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from cleanroom.errors import DecryptionError, KeyStoreError
from cleanroom.keystores.base import (
    MIN_RSA_KEY_SIZE,
    PUBLIC_EXPONENT,
    check_key_size,
    validate_provider_name,
    verify_pkcs1_sha256,
)

DEFAULT_PROVIDER_NAME: Final = "CLEANROOM_PKCS11"

_LABEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_OAEP_SHA1: Final = (Mechanism.SHA_1, pkcs11.MGF.SHA1, None)
# What a token reports when a ciphertext is not a valid OAEP encryption under the key
# (SoftHSM2 says CKR_GENERAL_ERROR); anything else is a failure of the token itself.
_BAD_CIPHERTEXT: Final = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.GeneralError,
)


@dataclass(eq=False)
class _Login:
    session: Any
    pin: bytes = field(repr=False)
    users: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


# One logged-in session per (module, token) in this process: PKCS#11 itself keeps the
# login state per process, so this mirrors the library rather than adding state of ours.
_LOGINS: dict[tuple[str, str, str], _Login] = {}
_LOGINS_LOCK = threading.Lock()


def _normalize_label(key_path: str) -> str:
    if not isinstance(key_path, str):
        raise KeyStoreError("a PKCS#11 key path is a string")
    label = key_path.lower()
    if not _LABEL.fullmatch(label):
        raise KeyStoreError(
            "a PKCS#11 key label is 1 to 64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; {key_path!r} is not"
        )
    return label


def _token_error(action: str, error: p11.PKCS11Error) -> KeyStoreError:
    return KeyStoreError(f"the PKCS#11 token failed to {action}: {type(error).__name__}")


class Pkcs11KeyStore:
    """RSA column master keys held in a PKCS#11 token, used only on the token.

    ``Pkcs11KeyStore(module_path, token_label, pin)`` loads the PKCS#11 module, finds the
    token and logs in, all at construction (a wrong PIN fails here). Close it with
    :meth:`close` or use it as a context manager. The PIN never appears in ``repr``.
    """

    def __init__(
        self,
        module_path: str | os.PathLike[str],
        token_label: str,
        pin: str,
        *,
        provider_name: str = DEFAULT_PROVIDER_NAME,
    ) -> None:
        self._provider_name = validate_provider_name(provider_name)
        module = os.path.realpath(module_path)
        if not os.path.isfile(module):
            raise KeyStoreError(f"no PKCS#11 module at {str(module_path)!r}")
        if not isinstance(pin, str) or not pin:
            raise KeyStoreError("a PKCS#11 user PIN is a non-empty string")
        self._module = module
        self._token_label = token_label
        self._public: dict[str, rsa.RSAPublicKey] = {}
        try:
            token = pkcs11.lib(module).get_token(token_label=token_label)
        except p11.NoSuchToken:
            raise KeyStoreError(f"no PKCS#11 token labelled {token_label!r}") from None
        except p11.MultipleTokensReturned:
            raise KeyStoreError(f"several PKCS#11 tokens are labelled {token_label!r}") from None
        except p11.PKCS11Error as error:
            raise _token_error("load", error) from None
        self._key = (module, token_label, bytes(token.serial).hex())
        self._login = self._acquire(token, pin.encode("utf-8"))
        self._closed = False

    def _acquire(self, token: Any, pin: bytes) -> _Login:
        with _LOGINS_LOCK:
            login = _LOGINS.get(self._key)
            if login is not None:
                if not hmac.compare_digest(login.pin, pin):
                    raise KeyStoreError(
                        f"the PIN for PKCS#11 token {self._token_label!r} is incorrect"
                    )
                login.users += 1
                return login
            try:
                session = token.open(rw=True, user_pin=pin.decode("utf-8"))
            except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
                raise KeyStoreError(
                    f"the PIN for PKCS#11 token {self._token_label!r} is incorrect"
                ) from None
            except p11.PinLocked:
                raise KeyStoreError(
                    f"the PIN of PKCS#11 token {self._token_label!r} is locked"
                ) from None
            except p11.UserAlreadyLoggedIn:
                raise KeyStoreError(
                    f"PKCS#11 token {self._token_label!r} is already logged in by other code "
                    "in this process"
                ) from None
            except p11.PKCS11Error as error:
                raise _token_error("open a session", error) from None
            login = _Login(session=session, pin=pin)
            _LOGINS[self._key] = login
            return login

    @property
    def provider_name(self) -> str:
        """The provider name recorded with every key path of this store."""
        return self._provider_name

    @property
    def token_label(self) -> str:
        """The label of the token holding the keys."""
        return self._token_label

    def close(self) -> None:
        """Release this store's share of the token session (logs out with the last one)."""
        if self._closed:
            return
        self._closed = True
        with _LOGINS_LOCK:
            login = self._login
            login.users -= 1
            if login.users == 0:
                _LOGINS.pop(self._key, None)
                # If the token went away there is nothing left to release.
                with login.lock, contextlib.suppress(p11.PKCS11Error):
                    login.session.close()

    def __enter__(self) -> Pkcs11KeyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_master_key(self, key_path_or_name: str, *, key_size: int = 2048) -> str:
        """Generate a non-extractable RSA key pair on the token; return its key path (label)."""
        label = _normalize_label(key_path_or_name)
        check_key_size(key_size)
        with self._session() as session:
            try:
                existing = list(session.get_objects({Attribute.LABEL: label}))
            except p11.PKCS11Error as error:
                raise _token_error("search for keys", error) from None
            if existing:
                raise KeyStoreError(f"a key labelled {label!r} already exists on the token")
            try:
                public, private = session.generate_keypair(
                    KeyType.RSA,
                    key_size,
                    id=label.encode("ascii"),
                    label=label,
                    store=True,
                    capabilities=(
                        MechanismFlag.ENCRYPT
                        | MechanismFlag.DECRYPT
                        | MechanismFlag.SIGN
                        | MechanismFlag.VERIFY
                    ),
                    public_template={
                        Attribute.PUBLIC_EXPONENT: PUBLIC_EXPONENT.to_bytes(3, "big"),
                        Attribute.WRAP: False,
                    },
                    private_template={
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.UNWRAP: False,
                        Attribute.DERIVE: False,
                    },
                )
                extractable = private[Attribute.EXTRACTABLE]
                sensitive = private[Attribute.SENSITIVE]
            except p11.PKCS11Error as error:
                raise _token_error("generate a key pair", error) from None
            if extractable or not sensitive:
                # A token that ignores the template would hand out the private key.
                with contextlib.suppress(p11.PKCS11Error):
                    private.destroy()
                    public.destroy()
                raise KeyStoreError(
                    "the token created an extractable private key; it was destroyed"
                )
        return label

    def public_key(self, key_path: str) -> rsa.RSAPublicKey:
        """The public key (read from the token) of the key labelled ``key_path``."""
        label = _normalize_label(key_path)
        cached = self._public.get(label)
        if cached is not None:
            return cached
        with self._session() as session:
            try:
                try:
                    obj = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label=label)
                except p11.NoSuchKey:
                    # Some tokens keep only the private object; it carries the public values.
                    obj = self._private(session, label)
                modulus = bytes(obj[Attribute.MODULUS])
                exponent = bytes(obj[Attribute.PUBLIC_EXPONENT])
            except p11.MultipleObjectsReturned:
                raise KeyStoreError(f"several public keys are labelled {label!r}") from None
            except p11.PKCS11Error as error:
                raise _token_error("read a public key", error) from None
        key = rsa.RSAPublicNumbers(
            int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")
        ).public_key()
        if key.key_size < MIN_RSA_KEY_SIZE:
            raise KeyStoreError(
                f"the key {label!r} has {key.key_size} bits; "
                f"column master keys need {MIN_RSA_KEY_SIZE} or more"
            )
        self._public[label] = key
        return key

    def decrypt(self, key_path: str, ciphertext: bytes) -> bytes:
        """RSA-OAEP (SHA-1, MGF1-SHA-1) decryption on the token."""
        label = _normalize_label(key_path)
        with self._session() as session:
            key = self._private(session, label)
            try:
                return bytes(
                    key.decrypt(
                        ciphertext,
                        mechanism=Mechanism.RSA_PKCS_OAEP,
                        mechanism_param=_OAEP_SHA1,
                    )
                )
            except _BAD_CIPHERTEXT:
                raise DecryptionError() from None
            except p11.PKCS11Error as error:
                raise _token_error("decrypt", error) from None

    def sign(self, key_path: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 SHA-256 signature of ``data``, made on the token."""
        label = _normalize_label(key_path)
        with self._session() as session:
            key = self._private(session, label)
            try:
                return bytes(key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
            except p11.PKCS11Error as error:
                raise _token_error("sign", error) from None

    def verify(self, key_path: str, data: bytes, signature: bytes) -> None:
        """Raise :class:`~cleanroom.errors.CryptoError` unless ``signature`` is valid.

        Verification needs only the public key, so it runs here rather than on the token.
        """
        verify_pkcs1_sha256(self.public_key(key_path), data, signature, key_path=key_path)

    def _private(self, session: Any, label: str) -> Any:
        try:
            return session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=label)
        except p11.NoSuchKey:
            raise KeyStoreError(f"no RSA private key labelled {label!r} on the token") from None
        except p11.MultipleObjectsReturned:
            raise KeyStoreError(f"several private keys are labelled {label!r}") from None
        except p11.PKCS11Error as error:
            raise _token_error("find a key", error) from None

    def _session(self) -> _LockedSession:
        if self._closed:
            raise KeyStoreError("this PKCS#11 key store is closed")
        return _LockedSession(self._login)

    def __repr__(self) -> str:
        return (
            f"Pkcs11KeyStore(module_path={self._module!r}, token_label={self._token_label!r}, "
            f"pin=<redacted>, provider_name={self._provider_name!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("key stores cannot be pickled")


class _LockedSession:
    """Hold the shared session's lock for one operation (sessions are not thread-safe)."""

    __slots__ = ("_login",)

    def __init__(self, login: _Login) -> None:
        self._login = login

    def __enter__(self) -> Any:
        self._login.lock.acquire()
        return self._login.session

    def __exit__(self, *exc_info: object) -> None:
        self._login.lock.release()


__all__ = ["DEFAULT_PROVIDER_NAME", "Pkcs11KeyStore"]
