"""The enclave bundle and its measurement.

The bundle is the code the simulated TEE runs: the ``cleanroom`` package directory (every
regular file except ``__pycache__`` directories) and, when there is one, the dependency lock
``requirements.lock``. It is laid out as::

    <bundle>/cleanroom/...          the package files
    <bundle>/requirements.lock      the lock (only when found or given)

Measurement (documented in ``docs/attestation.md``)::

    manifest    = "".join(sorted(f"{path}\\t{sha256(file).hex()}\\n" for every file))
    measurement = SHA-384(manifest as UTF-8)            48 bytes, shown as 96 lowercase hex

``path`` is the POSIX path relative to the bundle root (``cleanroom/tee/bundle.py``,
``requirements.lock``); lines sort by their UTF-8 bytes. The measurement is computed over
the *copy*, after copying, so a file edited during the copy cannot make the measurement
disagree with the code that runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import cleanroom
from cleanroom.errors import ConfigurationError

PACKAGE_NAME = "cleanroom"
LOCK_NAME = "requirements.lock"
_SKIP_DIRS = frozenset({"__pycache__"})


@dataclass(frozen=True, slots=True)
class Bundle:
    """A copied enclave bundle: where it is and what it measures to (hex SHA-384)."""

    path: Path
    measurement: str


def default_package_dir() -> Path:
    """The directory of the installed ``cleanroom`` package."""
    return Path(cleanroom.__file__).resolve().parent


def default_lock_file(package_dir: Path | None = None) -> Path | None:
    """``requirements.lock`` of the project that holds the package (src layout), if any.

    An installed wheel has no project root, so this returns ``None`` there and the bundle
    measures the package files only.
    """
    package_dir = package_dir or default_package_dir()
    candidate = package_dir.parent.parent / LOCK_NAME
    return candidate if candidate.is_file() else None


def _bundle_files(root: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ConfigurationError(f"the enclave bundle may not contain symlinks: {name}")
            if stat.S_ISREG(mode):
                files.append((path.relative_to(root).as_posix(), path))
    return files


def manifest(bundle_dir: Path) -> bytes:
    """The sorted ``path\\tsha256hex\\n`` manifest of every file in ``bundle_dir``."""
    lines = []
    for rel, path in _bundle_files(bundle_dir):
        lines.append(f"{rel}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return b"".join(sorted(lines))


def measure_bundle(bundle_dir: Path) -> str:
    """The measurement (hex SHA-384 of :func:`manifest`) of a bundle directory."""
    return hashlib.sha384(manifest(Path(bundle_dir))).hexdigest()


def build_bundle(
    dest: Path, *, package_dir: Path | None = None, lock_file: Path | None = None
) -> Bundle:
    """Copy the package (and lock) into ``dest`` and measure the copy.

    ``dest`` must not exist (it is created 0700) or be an empty directory.
    """
    package_dir = Path(package_dir) if package_dir else default_package_dir()
    if not (package_dir / "__init__.py").is_file():
        raise ConfigurationError(f"{package_dir} is not a Python package directory")
    dest = Path(dest)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.chmod(0o700)
    else:
        dest.mkdir(mode=0o700, parents=False, exist_ok=False)
    target = dest / PACKAGE_NAME
    target.mkdir(mode=0o700)
    for rel, path in _bundle_files(package_dir):
        out = target / rel
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        out.chmod(0o400)
    if lock_file is not None:
        shutil.copyfile(lock_file, dest / LOCK_NAME)
        (dest / LOCK_NAME).chmod(0o400)
    return Bundle(path=dest, measurement=measure_bundle(dest))
