"""TLS and SASL settings (contract §4): checked before any connection, each mistake named by
its flag; the password never in a repr, `--help` or an error."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys

import pytest

from dunning.config.security import BrokerSecurity, SecurityError
from dunning.streams.broker import free_port
from dunning.streams.reach import BrokerError, check_broker
from tests.streams.secure_kafka import Certificates

SECRET = "Pw-never-shown-31f"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


def test_protocol_follows_the_settings(certs):
    assert BrokerSecurity().protocol == "PLAINTEXT"
    assert BrokerSecurity(ssl_ca=certs.ca_file).protocol == "SSL"
    sasl = BrokerSecurity(sasl_mechanism="SCRAM-SHA-256", username="u", password=SECRET)
    assert sasl.protocol == "SASL_PLAINTEXT"
    both = BrokerSecurity(ssl_ca=certs.ca_file, sasl_mechanism="SCRAM-SHA-512", username="u",
                          password=SECRET)
    assert both.protocol == "SASL_SSL"
    options = both.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == SECRET
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert SECRET not in repr(both) and SECRET not in both.describe()
    assert both.environment()["DUNNING_BROKER_PASSWORD"] == SECRET


@pytest.mark.parametrize(("fields", "named"), [
    ({"sasl_mechanism": "SCRAM-SHA-1"}, "--broker-sasl-mechanism 'SCRAM-SHA-1'"),
    ({"sasl_mechanism": "PLAIN", "username": "u"}, "--broker-password"),
    ({"username": "u", "password": SECRET}, "need --broker-sasl-mechanism"),
    ({"ssl_cert": "x.pem"}, "--broker-ssl-cert and --broker-ssl-key go together"),
    ({"ssl_ca": "/no/such/ca.pem"}, "--broker-ssl-ca /no/such/ca.pem: no such file"),
])
def test_mistakes_are_named_by_their_flag(fields, named):
    with pytest.raises(SecurityError) as caught:
        BrokerSecurity(**fields).check()
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_file_that_is_no_ca_bundle_is_named(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    with pytest.raises(SecurityError, match=r"--broker-ssl-ca .*: not a CA bundle"):
        BrokerSecurity(ssl_ca=str(junk)).check()


def test_a_key_that_is_not_the_certificates_is_named(certs):
    with pytest.raises(SecurityError, match=r"--broker-ssl-cert .* cannot be used"):
        BrokerSecurity(ssl_ca=certs.ca_file, ssl_cert=certs.server_cert,
                       ssl_key=certs.ca_file).check()


def test_an_unreachable_broker_is_waited_for_then_named():
    port = free_port()
    with pytest.raises(BrokerError, match=f"cannot reach the broker at 127.0.0.1:{port}"):
        asyncio.run(check_broker(f"127.0.0.1:{port}", BrokerSecurity(), wait=1.5))


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUNNING_")}
    return subprocess.run([sys.executable, "-m", "dunning.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**clean, **env})


def test_the_worker_stops_at_once_on_settings_that_cannot_work():
    done = _cli("worker", "--broker-sasl-mechanism", "SCRAM-SHA-512",
                DUNNING_BROKER_PASSWORD=SECRET)
    assert done.returncode != 0
    assert "needs --broker-username and --broker-password" in done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize("command", ["worker", "tick", "demo", "pause", "resume", "update"])
def test_help_names_the_settings_and_shows_no_secret(command):
    done = _cli(command, "--help", DUNNING_BROKER_PASSWORD=SECRET, DUNNING_WEB_TOKEN=SECRET)
    assert done.returncode == 0
    for flag in ("--broker-ssl-ca", "--broker-ssl-cert", "--broker-ssl-key",
                 "--broker-sasl-mechanism", "--broker-username", "--broker-password"):
        assert flag in done.stdout
    assert SECRET not in done.stdout
