"""Installed like a library (not editable), `ingest migrate` still finds its SQL: sql/ ships in the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ingest.migrate import discover, discover_functions

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "ingest", "worker", "sql")


@pytest.mark.slow
def test_non_editable_install_migrates(empty_db_url: str, tmp_path: Path) -> None:
    """`pip install --target` of the project, run from elsewhere, applies every migration and function."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:  # a clean copy: no build/ or egg-info left in the work tree
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    target = tmp_path / "site"
    # Build isolation brings the build backend pyproject.toml declares, as a user's pip would.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    installed = target / "ingest" / "sql"
    assert not installed.is_symlink()
    assert sorted(p.name for p in (installed / "migrations").glob("*.sql")) == [m.path.name for m in discover()]
    assert sorted(p.name for p in (installed / "functions").glob("*.sql")) == [p.name for p in discover_functions()]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "DATABASE_URL": empty_db_url}
    where = subprocess.run(
        [sys.executable, "-c", "import ingest.migrate as m; print(m.__file__); print(m.SQL_DIR)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    module_file, sql_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(target)
    assert Path(sql_dir).is_relative_to(target)

    result = subprocess.run(
        [sys.executable, "-m", "ingest", "migrate"], capture_output=True, text=True, cwd=elsewhere, env=env
    )
    assert result.returncode == 0, result.stderr
    assert f"applied {len(discover())} migration(s)" in result.stdout
    with psycopg.connect(empty_db_url) as conn:
        found = conn.execute(
            "SELECT to_regclass('user_sessions') IS NOT NULL, to_regclass('call_events') IS NOT NULL,"
            " to_regprocedure('ingest_apply_patch(jsonb)') IS NOT NULL"
        ).fetchone()
    assert found == (True, True, True)
