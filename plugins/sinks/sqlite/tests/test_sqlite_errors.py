"""A path that cannot hold a database fails at open() with the path and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickwire_sqlite import SqliteSettings, SqliteSink, SqliteSinkError


async def open_error(path: Path) -> SqliteSinkError:
    sink = SqliteSink(SqliteSettings(path=path))
    with pytest.raises(SqliteSinkError) as info:
        await sink.open()
    error = info.value
    assert isinstance(error, OSError)
    assert str(path) in str(error)
    assert error.path == path
    assert "sqlite3" not in type(error).__module__
    return error


@pytest.mark.anyio
async def test_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    error = await open_error(blocker / "sub" / "t.db")
    assert "cannot create the folder" in str(error)
    assert "TICKWIRE_SQLITE_PATH" in str(error)


@pytest.mark.anyio
async def test_a_folder_under_proc_even_as_root() -> None:
    error = await open_error(Path("/proc/tickwire-no-such-dir/t.db"))
    assert "writable location" in str(error)


@pytest.mark.anyio
async def test_a_directory_as_the_path(tmp_path: Path) -> None:
    error = await open_error(tmp_path)
    assert "is a directory" in str(error)


@pytest.mark.anyio
async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    error = await open_error(path)
    assert "not a (healthy) SQLite database" in str(error)
    assert path.read_bytes().startswith(b"these are my notes")  # left as it was


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        error = await open_error(folder / "t.db")
        assert "writable" in str(error)
    finally:
        folder.chmod(0o700)


@pytest.mark.anyio
async def test_a_read_only_database_file(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SqliteSink(SqliteSettings(path=path)):
        pass
    # A read-only file system is what root cannot write through either: emulate it with an
    # immutable flag where possible, otherwise with permissions (non-root only).
    if os.geteuid() == 0:
        pytest.skip("needs a read-only file, which root can always write")
    path.chmod(0o400)
    try:
        error = await open_error(path)
        assert "read-only" in str(error) or "writable" in str(error)
    finally:
        path.chmod(0o600)


def test_the_error_prints_without_a_sqlite_traceback(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"x" * 4096)
    code = (
        "import anyio, sys\n"
        "from tickwire_sqlite import SqliteSettings, SqliteSink\n"
        f"anyio.run(SqliteSink(SqliteSettings(path={str(path)!r})).open)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "SqliteSinkError" in result.stderr
    assert "During handling of the above exception" not in result.stderr
    assert "direct cause" not in result.stderr
