"""TLS and SASL to Kafka (contract §4 "Security"): one set of settings for every client.

Every Kafka client the project makes (Faust's, the admin client, the tick gate's consumers,
the ledger's, `dunning tick`'s, the demo's) takes `client_options()`, so none of them can be
left talking plaintext to a secured cluster. A mistake in the settings themselves (a missing
file, a key without its certificate, a password without a user) is found before any connection
and named by its flag.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityError(ValueError):
    """Settings that cannot work; the message names the flag and says why."""


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    ssl_ca: str | None = None  # CA bundle the broker's certificate must chain to
    ssl_cert: str | None = None  # this client's certificate (mutual TLS), with ssl_key
    ssl_key: str | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    # A secret: never logged, shown or put in an error (repr leaves it out).
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return any((self.ssl_ca, self.ssl_cert, self.ssl_key))

    @property
    def protocol(self) -> str:
        """Kafka's name for it: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
        if self.sasl_mechanism:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def describe(self) -> str:
        """For logs: what is used, never the password."""
        if self.sasl_mechanism:
            return f"{self.protocol}, {self.sasl_mechanism} as {self.username!r}"
        return self.protocol

    def check(self) -> None:
        """Raise SecurityError for settings that cannot work, naming the flag."""
        if self.sasl_mechanism is not None and self.sasl_mechanism not in MECHANISMS:
            raise SecurityError(f"--broker-sasl-mechanism {self.sasl_mechanism!r}: one of "
                                f"{', '.join(MECHANISMS)}")
        if self.sasl_mechanism and not (self.username and self.password):
            raise SecurityError(f"--broker-sasl-mechanism {self.sasl_mechanism} needs "
                                "--broker-username and --broker-password "
                                "(DUNNING_BROKER_PASSWORD)")
        if not self.sasl_mechanism and (self.username or self.password):
            raise SecurityError("--broker-username and --broker-password need "
                                "--broker-sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
        if bool(self.ssl_cert) != bool(self.ssl_key):
            raise SecurityError("--broker-ssl-cert and --broker-ssl-key go together (a client "
                                "certificate and its private key)")
        for flag, path in (("--broker-ssl-ca", self.ssl_ca), ("--broker-ssl-cert", self.ssl_cert),
                           ("--broker-ssl-key", self.ssl_key)):
            if path is not None and not Path(path).is_file():
                raise SecurityError(f"{flag} {path}: no such file")
        self.ssl_context()

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context: the broker's certificate verified against --broker-ssl-ca (the
        system's CAs when only a client certificate is given) and its host name checked."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ssl_ca)
        except (OSError, ssl.SSLError) as exc:
            raise SecurityError(f"--broker-ssl-ca {self.ssl_ca}: not a CA bundle ({exc})") from None
        if self.ssl_cert:
            try:
                context.load_cert_chain(self.ssl_cert, self.ssl_key)
            except (OSError, ssl.SSLError) as exc:
                raise SecurityError(f"--broker-ssl-cert {self.ssl_cert} with --broker-ssl-key "
                                    f"{self.ssl_key}: cannot be used ({exc})") from None
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism:
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def environment(self) -> dict[str, str]:
        """The same settings as DUNNING_* variables, for a process this one starts: a password
        in a child's arguments would show in `ps`."""
        names = {"BROKER_SSL_CA": self.ssl_ca, "BROKER_SSL_CERT": self.ssl_cert,
                 "BROKER_SSL_KEY": self.ssl_key, "BROKER_SASL_MECHANISM": self.sasl_mechanism,
                 "BROKER_USERNAME": self.username, "BROKER_PASSWORD": self.password}
        return {"DUNNING_" + name: value for name, value in names.items() if value}
