"""Shared fixtures: isolated settings, real SQLite and PostgreSQL databases, the app and an API client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

# Tests never read a developer's .env or environment.
for _name in list(os.environ):
    if _name.startswith("REPLYFLOW_"):
        del os.environ[_name]

from replyflow.config import Settings, get_settings, load_settings  # noqa: E402
from replyflow.db import Base, migrate  # noqa: E402
from replyflow.models import load_all  # noqa: E402
from replyflow.runtime import Runtime  # noqa: E402

load_all()

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


POSTGRES_AVAILABLE = _postgres_available()


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(tmp_path: Path, data_dir: Path) -> Any:
    """Build Settings for a test; defaults to a sandbox-mode SQLite database in tmp_path."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'replyflow.db'}",
            "data_dir": data_dir,
            "public_url": "http://testserver",
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return make_settings()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, created and dropped by this test."""
    if not POSTGRES_AVAILABLE:
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    name = f"replyflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'param.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime whose schema comes from ``create_all`` (fast); the migration test checks they agree."""
    rt = Runtime(settings)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.fixture
def migrated_runtime(settings: Settings) -> Iterator[Runtime]:
    migrate(settings.database_url)
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> Any:
    from replyflow.app import create_app

    return create_app(settings, runtime=runtime)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def workspace_key(runtime: Runtime) -> tuple[str, str]:
    """(workspace_id, api_key) of a new workspace."""
    from replyflow.workspaces import service

    with runtime.session() as session:
        ws, issued = service.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:8]}")
        return ws.id, issued.secret


@pytest.fixture
def auth_headers(workspace_key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {workspace_key[1]}"}
