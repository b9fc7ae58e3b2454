"""A python-flavor archive is unpacked within bounds: total uncompressed size, member count, no
path leaving its directory, no links; a zip bomb stops at the cap, however small the archive."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from fleet_serving.errors import ModelLoadError
from fleet_serving.runtimes.python import ArchiveLimits, unpack

MODEL_PY = b"class Model:\n    def predict(self, rows):\n        return [1 for _ in rows]\n"
LIMITS = ArchiveLimits(max_unpacked_bytes=1 * 2**20, max_members=20)


def archive(*members: tuple[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.py", MODEL_PY)
        for name, data in members:
            z.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo("link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, symlink)
    return buffer.getvalue()


def test_a_small_archive_that_inflates_past_the_cap_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    bomb = archive(("zeros.bin", b"\0" * (8 * 2**20)))
    assert len(bomb) < 64 * 2**10, "a zip bomb-ish archive: tiny on the wire"
    with pytest.raises(ModelLoadError, match="uncompressed") as refused:
        unpack(bomb, tmp_path / "m", LIMITS)
    assert refused.value.field == "artifact"
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == [], "the partial extraction is removed"


def test_an_archive_with_too_many_members_is_refused(tmp_path: Path) -> None:
    many = archive(*((f"data/{i}.txt", b"x") for i in range(30)))
    with pytest.raises(ModelLoadError, match="members"):
        unpack(many, tmp_path / "m", LIMITS)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name", ["../escape.py", "/etc/cron.d/evil", "data/../../escape.py", "C:/evil.py"])
def test_a_member_leaving_the_archive_directory_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelLoadError, match="outside"):
        unpack(archive((name, b"print('owned')")), tmp_path / "deep" / "m", LIMITS)
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "deep" / "escape.py").exists()


def test_a_symbolic_link_member_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="link"):
        unpack(archive(symlink="/etc/passwd"), tmp_path / "m", LIMITS)


def test_an_archive_within_the_limits_unpacks(tmp_path: Path) -> None:
    target = unpack(archive(("data/table.csv", b"a,b\n1,2\n")), tmp_path / "m", LIMITS)
    assert (target / "model.py").read_bytes() == MODEL_PY
    assert (target / "data" / "table.csv").is_file()
