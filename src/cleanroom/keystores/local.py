"""A directory of PEM RSA keys: the default key store, for development and the demo.

Layout: one unencrypted PKCS#8 PEM file per column master key, ``<directory>/<name>.pem``,
mode 0600, in a directory of mode 0700. The key path is the key name (lower-cased;
letters, digits, ``.``, ``_`` and ``-``; it never names a file outside the directory).

Security is the file system's: anyone who can read the files holds the keys. Use
:class:`~cleanroom.keystores.Pkcs11KeyStore` where that is not good enough.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
from pathlib import Path
from typing import Final, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cleanroom.errors import DecryptionError, KeyStoreError
from cleanroom.keystores.base import (
    MIN_RSA_KEY_SIZE,
    PUBLIC_EXPONENT,
    check_key_size,
    oaep_sha1,
    validate_provider_name,
    verify_pkcs1_sha256,
)

DEFAULT_PROVIDER_NAME: Final = "CLEANROOM_LOCAL_PEM"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_SUFFIX = ".pem"


def _normalize_name(key_path: str) -> str:
    if not isinstance(key_path, str):
        raise KeyStoreError("a local key path is a string")
    name = key_path.lower()
    if not _NAME.fullmatch(name):
        raise KeyStoreError(
            "a local key name is 1 to 128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; {key_path!r} is not"
        )
    return name


def _check_private_mode(path: Path, what: str) -> None:
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise KeyStoreError(
            f"{what} {str(path)!r} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); restrict it to its owner"
        )


class LocalKeyStore:
    """Column master keys as PEM files in one private directory.

    ``LocalKeyStore(directory)`` creates the directory (mode 0700) if it is missing and
    refuses one that group or others can access. Keys are generated here
    (:meth:`create_master_key`) or copied in as ``<name>.pem`` (mode 0600, RSA ≥ 2048).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        provider_name: str = DEFAULT_PROVIDER_NAME,
    ) -> None:
        self._provider_name = validate_provider_name(provider_name)
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise KeyStoreError(
                f"cannot create the key directory {str(path)!r}: {error.strerror}"
            ) from None
        if not path.is_dir():
            raise KeyStoreError(f"{str(path)!r} is not a directory")
        _check_private_mode(path, "the key directory")
        self._directory = path
        self._lock = threading.Lock()
        self._cache: dict[str, rsa.RSAPrivateKey] = {}

    @property
    def provider_name(self) -> str:
        """The provider name recorded with every key path of this store."""
        return self._provider_name

    @property
    def directory(self) -> Path:
        """The directory holding the PEM files."""
        return self._directory

    def key_names(self) -> list[str]:
        """The names (key paths) of the keys in the directory, sorted."""
        names = (p.name[: -len(_SUFFIX)] for p in self._directory.glob(f"*{_SUFFIX}"))
        return sorted(n for n in names if _NAME.fullmatch(n))

    def create_master_key(self, key_path_or_name: str, *, key_size: int = 2048) -> str:
        """Generate an RSA key pair, write it as ``<name>.pem`` (0600) and return its path.

        The file is written under a temporary name and linked into place, so readers never
        see a partial key and an existing key is never overwritten.
        """
        name = _normalize_name(key_path_or_name)
        check_key_size(key_size)
        target = self._file(name)
        if target.exists():
            raise KeyStoreError(f"a key named {name!r} already exists in this store")
        key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=key_size)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        temporary = self._directory / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)  # the umask can only remove bits; make the mode exact
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temporary, target)  # atomic, and fails if the target exists
        except FileExistsError:
            raise KeyStoreError(f"a key named {name!r} already exists in this store") from None
        except OSError as error:
            raise KeyStoreError(f"cannot write the key {name!r}: {error.strerror}") from None
        finally:
            temporary.unlink(missing_ok=True)
        self._sync_directory()
        with self._lock:
            self._cache[name] = key
        return name

    def public_key(self, key_path: str) -> rsa.RSAPublicKey:
        """The public key of the column master key ``key_path``."""
        return self._private_key(key_path).public_key()

    def decrypt(self, key_path: str, ciphertext: bytes) -> bytes:
        """RSA-OAEP (SHA-1) decryption with the key ``key_path``."""
        key = self._private_key(key_path)
        try:
            return key.decrypt(ciphertext, oaep_sha1())
        except ValueError:
            raise DecryptionError() from None

    def sign(self, key_path: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 SHA-256 signature of ``data`` with the key ``key_path``."""
        return self._private_key(key_path).sign(data, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, key_path: str, data: bytes, signature: bytes) -> None:
        """Raise :class:`~cleanroom.errors.CryptoError` unless ``signature`` is valid."""
        verify_pkcs1_sha256(self.public_key(key_path), data, signature, key_path=key_path)

    def _file(self, name: str) -> Path:
        return self._directory / f"{name}{_SUFFIX}"

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self._directory, os.O_RDONLY)
        except OSError:
            return
        try:
            # Some file systems cannot fsync a directory; the key file itself is synced.
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)

    def _private_key(self, key_path: str) -> rsa.RSAPrivateKey:
        name = _normalize_name(key_path)
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None:
            return cached
        path = self._file(name)
        try:
            _check_private_mode(path, "the key file")
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(f"no key named {name!r} in this store") from None
        except OSError as error:
            raise KeyStoreError(f"cannot read the key {name!r}: {error.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            # The parser's message could quote the file; say only what is wrong.
            raise KeyStoreError(
                f"the key file of {name!r} is not an unencrypted PEM private key"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyStoreError(f"the key {name!r} is not an RSA key")
        if key.key_size < MIN_RSA_KEY_SIZE:
            raise KeyStoreError(
                f"the key {name!r} has {key.key_size} bits; "
                f"column master keys need {MIN_RSA_KEY_SIZE} or more"
            )
        with self._lock:
            self._cache[name] = key
        return key

    def __repr__(self) -> str:
        return (
            f"LocalKeyStore(directory={str(self._directory)!r}, "
            f"provider_name={self._provider_name!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("key stores cannot be pickled")


__all__ = ["DEFAULT_PROVIDER_NAME", "LocalKeyStore"]
