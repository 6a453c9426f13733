"""PostgreSQL over TLS for the tests, with a CA of the test's own (`Certificates`).

`ServerTls`: a PostgreSQL server started with `ssl = on` and a `hostssl`-only pg_hba, the way
operators run it. The embedded server's build has no TLS at all ("SSL is not supported by this
build"), so this needs a server binary that has it: Debian's, where installed.

`FrontTls`: the embedded server behind a TLS front of the test's own, on a loopback port. It
speaks PostgreSQL's side of the negotiation (the client's SSLRequest, answered `S`, then the
TLS handshake with the test CA's server certificate) and relays the session to the embedded
server's Unix socket; a client that does not ask for TLS is turned away, as `hostssl` does.
What the worker does as a client (asyncpg, `sslmode=verify-full`) is the same against both.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

from dunning.streams.broker import free_port
from tests.streams.secure_kafka import Certificates

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # length, then the SSLRequest code


def server_binary() -> str | None:
    """A PostgreSQL server with TLS on this machine (Debian's), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return found[-1] if found else None


class ServerTls:
    """A PostgreSQL server of the machine's, `ssl = on`, TLS-only over loopback TCP."""

    def __init__(self, folder: Path, certs: Certificates, user: str = "embedded_postgres") -> None:
        binary = server_binary()
        assert binary is not None, "no PostgreSQL server with TLS on this machine"
        bindir = Path(binary).parent
        self.certs = certs
        self.port = free_port()
        self.pgdata = folder / "pgdata"
        self.pgdata.mkdir(parents=True)
        entry = pwd.getpwnam(user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        self.user = user
        subprocess.run([str(bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                        "--auth=trust", "--encoding=utf8"], check=True, user=user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, source in (("server.crt", certs.server_cert), ("server.key", certs.server_key)):
            target = self.pgdata / name
            shutil.copy(source, target)
            target.chmod(0o600)  # PostgreSQL refuses a key others can read
            os.chown(target, entry.pw_uid, entry.pw_gid)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.pgdata}'\nssl = on\n"
                       "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        (self.pgdata / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n")
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-w", "-l",
                        str(self.pgdata / "log"), "start"], check=True, user=user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._pg_ctl = str(bindir / "pg_ctl")

    def url(self, database: str, ca: str | None = None, mode: str = "verify-full") -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode={mode}"
                f"&sslrootcert={ca or self.certs.ca_file}")

    def stop(self) -> None:
        subprocess.run([self._pg_ctl, "-D", str(self.pgdata), "-w", "-m", "fast", "stop"],
                       user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class FrontTls:
    """The embedded server (`postgres`, the tests' own) behind a TLS front on a loopback port."""

    def __init__(self, socket_path: str, certs: Certificates) -> None:
        self.certs = certs
        self.socket_path = socket_path
        self.port = free_port()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.server_cert, certs.server_key)
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("the TLS front did not start")

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def go() -> None:
            self._server = await asyncio.start_server(self._session, "127.0.0.1", self.port)
            started.set()

        self.loop.run_until_complete(go())
        self.loop.run_forever()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(8)
            if first != SSL_REQUEST:  # no TLS asked for: refused, as a hostssl-only server does
                await reader.readexactly(struct.unpack("!i", first[:4])[0] - 8)
                writer.write(_error("28000", "no pg_hba.conf entry for host \"127.0.0.1\", "
                                             "no encryption"))
                await writer.drain()
                return
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.context)
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # a client that gave up on the handshake (an untrusted certificate)
        finally:
            writer.close()

    def url(self, database: str, ca: str | None = None, mode: str = "verify-full") -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode={mode}"
                f"&sslrootcert={ca or self.certs.ca_file}")

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _error(code: str, message: str) -> bytes:
    """A FATAL ErrorResponse, as the server sends one."""
    fields = b"".join(tag + text.encode() + b"\0" for tag, text in
                      ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))) + b"\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


def socket_of(url: str) -> str:
    """The Unix socket file of an embedded server's URL (`...?host=/run/dir`)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    folder = parse_qs(parts.query).get("host", [parts.hostname or "/tmp"])[0]
    port = parts.port or 5432
    path = os.path.join(folder, f".s.PGSQL.{port}")
    deadline = time.monotonic() + 5
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return path
