"""Worker settings: flags of `dunning worker`, each with its DUNNING_* variable (contract §4)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from dunning.config.security import BrokerSecurity

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
# Contract §4, delivery: what a consumer of the output topics may see after a crash.
AT_LEAST_ONCE = "at_least_once"  # a batch redone after a crash sends its commands again
EXACTLY_ONCE = "exactly_once"  # a batch's output, state and offsets in one transaction
GUARANTEES = (AT_LEAST_ONCE, EXACTLY_ONCE)


def env(flag: str, default: Any = None) -> Any:
    """The DUNNING_* variable for `--some-flag`, else the default."""
    return os.environ.get("DUNNING_" + flag.lstrip("-").replace("-", "_").upper(), default)


def bootstrap(url: str) -> str:
    """`kafka://host:port[;host:port]` (Faust's form) as aiokafka's `host:port,host:port`."""
    hosts = url.split("://", 1)[-1]
    return ",".join(h.strip().rstrip("/") for h in hosts.replace(";", ",").split(",") if h)


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = DEFAULT_BROKER
    policy: str | None = None
    database_url: str | None = None
    web_port: int = 6066
    web_host: str = socket.gethostname()  # the name other workers reach this one by
    partitions: int = 8
    # Replicas of every topic the worker creates, its internal logs and table changelogs
    # included: 1 for a single broker; 3 in production, with the brokers' min.insync.replicas
    # 2 (the worker's producer waits for acks from all in-sync replicas).
    replication_factor: int = 1
    app_id: str = "dunning"
    data_dir: str = ".dunning"
    output_prefix: str = ""  # a shadow worker's output topics: prefix + the contract's names
    # Group timings. Tansu holds a join for about the rebalance timeout, so short ones let a
    # worker start in seconds there; Apache Kafka holds none, and the timeout only bounds how
    # long a rebalance waits for members. A batch must still finish within it.
    rebalance_timeout: float = 10.0
    session_timeout: float = 30.0
    # Longest a fetch waits at the broker for records to arrive: latency of a quiet hop.
    fetch_max_wait: float = 0.1
    log_level: str = "info"
    # Contract §4: a tick moving logical time more than this at once is refused (seconds;
    # 0 = no guard). The command line takes days.
    max_tick_jump: int = 7 * 86_400
    # Contract §4: GET /invoices/{id} needs this bearer token; without one, only loopback
    # clients are answered. A secret: never logged or shown (repr hides it).
    web_token: str | None = field(default=None, repr=False)
    # Contract §4: TLS and SASL for every Kafka client the worker makes.
    kafka: BrokerSecurity = field(default_factory=BrokerSecurity)
    guarantee: str = AT_LEAST_ONCE  # one of GUARANTEES; exactly_once needs transactions

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == EXACTLY_ONCE

    @property
    def bootstrap(self) -> str:
        return bootstrap(self.broker)
