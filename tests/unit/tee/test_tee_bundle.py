import hashlib
import os
from pathlib import Path

import pytest

from cleanroom.errors import ConfigurationError
from cleanroom.tee import build_bundle, manifest, measure_bundle


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "src" / "cleanroom"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "sub" / "mod.py").write_bytes(b"print('hello')\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "junk.pyc").write_bytes(b"\0" * 10)
    return pkg


def test_manifest_format_is_sorted_path_tab_sha256(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    lock = tmp_path / "requirements.lock"
    lock.write_text("cryptography==50\n")
    bundle = build_bundle(tmp_path / "b", package_dir=pkg, lock_file=lock)
    expected = b"".join(
        sorted(
            f"{rel}\t{hashlib.sha256(data).hexdigest()}\n".encode()
            for rel, data in [
                ("cleanroom/__init__.py", b"x = 1\n"),
                ("cleanroom/sub/mod.py", b"print('hello')\n"),
                ("requirements.lock", b"cryptography==50\n"),
            ]
        )
    )
    assert manifest(bundle.path) == expected
    assert bundle.measurement == hashlib.sha384(expected).hexdigest()
    assert not (bundle.path / "cleanroom" / "__pycache__").exists()
    assert os.stat(bundle.path).st_mode & 0o777 == 0o700


def test_one_changed_byte_changes_the_measurement(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    first = build_bundle(tmp_path / "a", package_dir=pkg)
    again = build_bundle(tmp_path / "b", package_dir=pkg)
    assert first.measurement == again.measurement
    (pkg / "sub" / "mod.py").write_bytes(b"print('hellp')\n")
    changed = build_bundle(tmp_path / "c", package_dir=pkg)
    assert changed.measurement != first.measurement
    assert measure_bundle(changed.path) == changed.measurement


def test_pycache_does_not_change_the_measurement(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    first = build_bundle(tmp_path / "a", package_dir=pkg)
    (pkg / "__pycache__" / "junk.pyc").write_bytes(b"\1" * 10)
    assert build_bundle(tmp_path / "b", package_dir=pkg).measurement == first.measurement


def test_renaming_a_file_changes_the_measurement(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    first = build_bundle(tmp_path / "a", package_dir=pkg)
    (pkg / "sub" / "mod.py").rename(pkg / "sub" / "mod2.py")
    assert build_bundle(tmp_path / "b", package_dir=pkg).measurement != first.measurement


def test_symlinks_and_non_packages_are_refused(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    (pkg / "link.py").symlink_to(pkg / "__init__.py")
    with pytest.raises(ConfigurationError):
        build_bundle(tmp_path / "a", package_dir=pkg)
    with pytest.raises(ConfigurationError):
        build_bundle(tmp_path / "b", package_dir=tmp_path)
