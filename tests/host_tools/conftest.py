"""Store fixtures: `store_url` runs a test on SQLite and on a throwaway PostgreSQL server."""

import os

import pytest

from harness import pgserver


@pytest.fixture(scope="session")
def pg_server():
    if os.environ.get("TAPKIT_NO_PG"):
        pytest.skip("TAPKIT_NO_PG is set")
    try:
        srv = pgserver.PGServer.start()
    except pgserver.PGUnavailable as e:
        pytest.skip(f"PostgreSQL not available: {e}")
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "taps.db")
    return request.getfixturevalue("pg_server").create_database()
