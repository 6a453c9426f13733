"""Can this process use the broker with its security settings? Asked once, at start.

A Kafka client given a wrong password, an untrusted certificate or no TLS for a TLS listener
does not fail: it logs "Unable to bootstrap" and retries for ever. So every command first
connects once itself and turns what went wrong into a message naming the setting; only a broker
that is not up (yet) is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from dunning.config.security import BrokerSecurity

log = logging.getLogger("dunning.broker")

Problem = tuple[bool, str]  # whether waiting cannot help, and what to tell the operator


class BrokerError(RuntimeError):
    """The broker cannot be used with these settings (or was not reached in time)."""


def hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


async def check_broker(bootstrap: str, security: BrokerSecurity, wait: float = 30.0) -> None:
    """Return once a bootstrap server answers a client with these settings; raise BrokerError
    at once for a setting that cannot work, or after `wait` seconds of an unreachable broker."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        problem = await _problem(bootstrap, security)
        if problem is None:
            return
        fatal, message = problem
        if fatal or loop.time() >= deadline:
            raise BrokerError(message)
        log.warning("%s; trying again", message)
        await asyncio.sleep(1.0)


async def _problem(bootstrap: str, security: BrokerSecurity) -> Problem | None:
    options = security.client_options()
    found: Problem = (False, f"no broker in {bootstrap}")
    for host, port in hosts(bootstrap):
        where = f"the broker at {host}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=10_000, **options), 15)
        except Exception as exc:
            found = await _diagnose(where, host, port, security, exc)
            if found[0]:
                return found
            continue
        conn.close()
        # ApiVersions, which the connection asked for, is answered before SASL; anything after
        # it is not, so a listener that wants SASL shows itself only now.
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{port}",
                                    request_timeout_ms=10_000, **options)
        try:
            await asyncio.wait_for(admin.start(), 20)
            return None
        except (KafkaConnectionError, TimeoutError) as exc:
            if not security.sasl_mechanism:
                return (True, f"{where} answered, then closed the connection: its listener "
                              "probably needs SASL (--broker-sasl-mechanism, --broker-username, "
                              "--broker-password)")
            found = (False, f"{where} did not answer: {_text(exc)}")
        finally:
            await admin.close()
    return found


async def _diagnose(where: str, host: str, port: int, security: BrokerSecurity,
                    exc: Exception) -> Problem:
    if isinstance(exc, SaslAuthenticationFailed):
        return (True, f"{where} refused the {security.sasl_mechanism} login of "
                      f"--broker-username {security.username!r}: check it and --broker-password "
                      f"(DUNNING_BROKER_PASSWORD) ({_text(exc)})")
    if isinstance(exc, UnsupportedSaslMechanismError):
        return (True, f"{where} does not offer --broker-sasl-mechanism "
                      f"{security.sasl_mechanism} ({_text(exc)})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = (f"--broker-ssl-ca {security.ssl_ca}" if security.ssl_ca
                   else "this machine's CAs (no --broker-ssl-ca)")
        return (True, f"{where} presented a certificate that {trusted} does not trust: "
                      f"{exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return (True, f"TLS with {where} failed ({exc.reason}): does that listener speak TLS? "
                      "(--broker-ssl-ca/--broker-ssl-cert turn TLS on)")
    if isinstance(exc, KafkaConnectionError) and not security.tls \
            and await _speaks_tls(host, port):
        return (True, f"{where} speaks TLS, and this client was given no TLS settings: set "
                      "--broker-ssl-ca (and the SASL settings if its listener needs them)")
    return (False, f"cannot reach {where}: {_text(exc)}")


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake succeeds there (no verification: this only tells the kind)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), 5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
