"""The ledger's PostgreSQL over TLS (contract §4: `sslmode=verify-full&sslrootcert=...` in the
URL): the certificate checked against the given CA, a wrong CA or a client without TLS refused
with a message that names the setting. Against the embedded server behind a TLS front (its
build has no TLS), and against a server started with `ssl = on` where this machine has one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dunning.ledger.db import DatabaseError, prepare
from tests.ledger.tls_postgres import FrontTls, ServerTls, server_binary, socket_of
from tests.streams.secure_kafka import Certificates


@pytest.fixture(scope="module", params=["front", "server"])
def tls_postgres(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp(f"pg-tls-{request.param}")
    certs = Certificates(folder / "certs")
    if request.param == "front":
        postgres = request.getfixturevalue("postgres")
        server: Any = FrontTls(socket_of(postgres.url("postgres")), certs)
    else:
        if server_binary() is None:
            pytest.skip("no PostgreSQL server with TLS on this machine (Debian's postgresql)")
        server = ServerTls(folder, certs)
    yield server
    server.stop()


def test_verify_full_connects_over_tls_and_migrates(tls_postgres):
    url = tls_postgres.url("ledger_tls")

    async def go() -> tuple[bool, int]:
        await prepare(url)
        conn = await asyncpg.connect(url)
        try:
            encrypted = conn._transport.get_extra_info("ssl_object") is not None
            return encrypted, await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()

    encrypted, applied = asyncio.run(go())
    assert encrypted
    assert applied >= 1


def test_a_wrong_ca_fails_clearly(tls_postgres):
    other = tls_postgres.certs.other_ca_file
    with pytest.raises(DatabaseError) as caught:
        asyncio.run(prepare(tls_postgres.url("ledger_tls", ca=other)))
    message = str(caught.value)
    assert f"sslrootcert={other}" in message
    assert "does not trust" in message
    assert "certificate verify failed" not in message  # said for a person, not as an SSL dump


def test_a_client_without_tls_is_refused_clearly(tls_postgres):
    with pytest.raises(DatabaseError) as caught:
        asyncio.run(prepare(tls_postgres.url("ledger_tls", mode="disable")))
    assert "cannot use PostgreSQL at 127.0.0.1" in str(caught.value)
    assert "--database-url" in str(caught.value)
