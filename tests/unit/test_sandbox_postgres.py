"""labinterp.sandbox.postgres and HAPI on PostgreSQL, without starting anything (the integration tier starts them:
tests/integration/test_postgres.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labinterp.sandbox.hapi import PG_DIALECT, Sandbox, SandboxError
from labinterp.sandbox.postgres import DB_USER, Postgres, PostgresError


def with_password(tmp_path: Path, port: int = 5544) -> Postgres:
    pg = Postgres(tmp_path, port=port)
    pg.home.mkdir(parents=True)
    pg.passfile.write_text("s3cret\n")
    return pg


def test_urls_name_the_loopback_port_user_and_password(tmp_path: Path) -> None:
    pg = with_password(tmp_path)
    assert pg.home == tmp_path.resolve() / "pg-5544" and pg.datadir == pg.home / "data"
    assert pg.url("queue") == f"postgresql://{DB_USER}:s3cret@127.0.0.1:5544/queue"
    assert pg.jdbc("hapi") == ("jdbc:postgresql://127.0.0.1:5544/hapi", DB_USER, "s3cret")
    assert not pg.running()


def test_no_password_before_start_and_only_plain_database_names(tmp_path: Path) -> None:
    with pytest.raises(PostgresError, match="start"):
        Postgres(tmp_path).url("x")
    pg = with_password(tmp_path)
    for bad in ("", "a-b", "x'; DROP DATABASE postgres; --", "1abc", "a" * 64):
        with pytest.raises(PostgresError, match="plain database name"):
            pg.create_database(bad)


def test_sandbox_on_postgres_gives_hapi_the_driver_dialect_and_credentials(tmp_path: Path, monkeypatch) -> None:
    pg = with_password(tmp_path)
    monkeypatch.setattr(Postgres, "create_database", lambda self, name: self.url(name))
    box = Sandbox(tmp_path, port=8123, database="postgres", postgres=pg)
    env = box._postgres_env()
    assert env == {
        "LABINTERP_HAPI_DB": "jdbc:postgresql://127.0.0.1:5544/hapi",
        "LABINTERP_HAPI_DB_USER": DB_USER,
        "LABINTERP_HAPI_DB_PASSWORD": "s3cret",
        "LABINTERP_HAPI_DB_DRIVER": "org.postgresql.Driver",
        "LABINTERP_HAPI_DB_DIALECT": PG_DIALECT,
    }
    assert not box.pg_marker.exists()  # someone else's PostgreSQL: down() leaves it alone
    assert all(k.startswith("LABINTERP_HAPI_") for k in env)


def test_sandbox_down_stops_the_postgres_it_started(tmp_path: Path, monkeypatch) -> None:
    stopped: list[int] = []
    monkeypatch.setattr(Postgres, "stop", lambda self, timeout=60.0: stopped.append(self.port) or True)
    box = Sandbox(tmp_path, port=8124, database="postgres", pg_port=5601)
    box.pg_marker.write_text("5601")
    assert box.down() is False  # no HAPI running
    assert stopped == [5601] and not box.pg_marker.exists()
    assert Sandbox(tmp_path, port=8124).down() is False and stopped == [5601]


def test_unknown_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="unknown sandbox database"):
        Sandbox(tmp_path, database="oracle")
