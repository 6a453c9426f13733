"""Apache Kafka with a SASL_SSL listener, as operators run it: a test CA, a server certificate
for 127.0.0.1 and localhost, and SCRAM-SHA-512 users created with the storage (`kafka-storage
format --add-scram`). The PLAINTEXT listener stays for the brokers' own traffic; clients under
test are given the SASL_SSL one (`secure_bootstrap`, `secure_url`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from dunning.config.security import BrokerSecurity
from dunning.streams.apache_kafka import KafkaBroker, KafkaNode
from dunning.streams.broker import free_port

USER, PASSWORD = "dunning", "s3cret-Broker-pw-7f2a"
MECHANISM = "SCRAM-SHA-512"


def write_pem(path: Path, *blobs: bytes) -> str:
    path.write_bytes(b"".join(blobs))
    path.chmod(0o600)
    return str(path)


def pkcs8(key_pem: bytes) -> bytes:
    """Kafka reads a PEM private key only in PKCS#8."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Certificates:
    """A CA of the test's own and files made from it, in `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self.ca_file = write_pem(folder / "ca.pem", self.ca.cert_pem.bytes())
        server = self.ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
        # Key and chain in one PEM file: Kafka's PEM keystore.
        self.server_keystore = write_pem(
            folder / "server.pem", pkcs8(server.private_key_pem.bytes()),
            *(blob.bytes() for blob in server.cert_chain_pems))
        self.server_key = write_pem(folder / "server.key", server.private_key_pem.bytes())
        self.server_cert = write_pem(folder / "server.crt",
                                     *(blob.bytes() for blob in server.cert_chain_pems))
        # A CA nobody trusts: a client given it must refuse the broker.
        self.other_ca_file = write_pem(folder / "other-ca.pem",
                                       trustme.CA().cert_pem.bytes())


def with_sasl_ssl(settings: dict[str, str], address: str, keystore: str) -> dict[str, str]:
    """A node's settings with a SASL_SSL (SCRAM-SHA-512) listener for clients at `address`,
    its key and certificate in the PEM file `keystore` (docker-compose.yml runs the same)."""
    settings = dict(settings)
    listener = f"SASL_SSL://{address}"
    settings["listeners"] += "," + listener
    settings["advertised.listeners"] += "," + listener
    settings["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
    settings.update({
        "sasl.enabled.mechanisms": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": keystore,
    })
    return settings


class SecureKafka(KafkaBroker):
    """One Kafka node with a SASL_SSL (SCRAM-SHA-512) listener beside the PLAINTEXT one."""

    def __init__(self, folder: Path | None = None) -> None:
        self.certs = Certificates(Path(folder or tempfile.mkdtemp(prefix="kafka-tls-")))
        self.format_options = ("--add-scram",
                               f"{MECHANISM}=[name={USER},password={PASSWORD}]")
        self.secure_port = free_port()
        super().__init__()
        self.secure_bootstrap = f"127.0.0.1:{self.secure_port}"
        self.secure_url = f"kafka://{self.secure_bootstrap}"

    def _settings(self, node: KafkaNode, extra: dict[str, str]) -> dict[str, str]:
        return with_sasl_ssl(super()._settings(node, extra), f"127.0.0.1:{self.secure_port}",
                             self.certs.server_keystore)

    def security(self, **changes: str | None) -> BrokerSecurity:
        """The settings a client needs for the SASL_SSL listener, with `changes`."""
        fields: dict[str, str | None] = {"ssl_ca": self.certs.ca_file,
                                         "sasl_mechanism": MECHANISM, "username": USER,
                                         "password": PASSWORD}
        return BrokerSecurity(**{**fields, **changes})  # type: ignore[arg-type]
