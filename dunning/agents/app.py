"""The worker: a Faust app with three agents, two tables and the web views of contract §5.

    billing.* --sequencer--> <app>-events --invoices--> collection.*
                                                    \\-> <app>-signals --subjects--> collection.*

Faust runs the consumer group, table changelogs and their recovery, and the web server; the
agents take their topics' records in whole batches (`batches.BatchConsumer`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import generate_latest

from dunning.agents.batches import BatchHandler, BatchTransport, Transactions, supports_transactions
from dunning.agents.gate import TickGate
from dunning.agents.invoices import InvoiceAgent
from dunning.agents.metrics import Metrics, Snapshot
from dunning.agents.sequencer import Sequencer
from dunning.agents.subjects import SubjectAgent
from dunning.config.policy import Policy
from dunning.config.security import BrokerSecurity
from dunning.config.settings import Settings
from dunning.ledger.db import DatabaseError, database_name, embedded_url, prepare
from dunning.ledger.sink import Ledger
from dunning.streams import records as wire
from dunning.streams.topics import INPUTS, OUTPUTS
from dunning.tables.state import invoice_view

log = logging.getLogger("dunning.worker")
# Prometheus text format; aiohttp refuses a charset in content_type (it adds utf-8 itself).
EXPOSITION = "text/plain; version=0.0.4"


class DunningApp(faust.App):
    """A Faust app whose consumer gives the registered topics' records to handlers in batches."""

    batch_handlers: dict[str, BatchHandler]
    transactions: Transactions | None = None  # with --guarantee exactly_once

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    async def _on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        # Exactly once: the new owner of an input partition fences the previous one before
        # anything of the partition is read (its changelog restored, its offset fetched), so
        # a transaction the previous owner left open is ended, and counted, first.
        if self.transactions is not None and not self.should_stop:
            await self.transactions.assign({tp for tp in assigned
                                            if tp.topic in self.batch_handlers})
        await super()._on_partitions_assigned(assigned, generation_id)


TABLES = ("invoices", "subjects")
# A changelog holds each key's latest row: compaction keeps it bounded, and a worker that
# takes over a partition reads the surviving rows, not every update ever written.
CHANGELOG_CONFIG = {"cleanup.policy": "compact"}


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog."""
    return f"{app_id}-{table}-changelog"


async def ensure_topics(settings: Settings) -> int:
    """Create the contract's topics, the internal ones and the tables' changelogs (compacted)
    where missing, with `--replication-factor` replicas; returns the partition count of the
    internal log, which every worker of the group must agree on."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap,
                                **settings.kafka.client_options())
    await admin.start()
    try:
        events = wire.events_topic(settings.app_id)
        outputs = [settings.output_prefix + t for t in OUTPUTS]
        wanted = [*INPUTS, *outputs, events, wire.signals_topic(settings.app_id)]
        await _create(admin, wanted, settings.partitions, settings.replication_factor)
        partitions = await partition_count(admin, events)
        if partitions != settings.partitions:
            log.warning("%s has %d partitions; using them (--partitions %d applies to new "
                        "topics only)", events, partitions, settings.partitions)
        # A changelog partition belongs to the internal log's partition of the same number.
        await _create(admin, [changelog_topic(settings.app_id, t) for t in TABLES], partitions,
                      settings.replication_factor, CHANGELOG_CONFIG)
        return partitions
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, names: list[str], partitions: int,
                  replicas: int, config: dict[str, str] | None = None) -> None:
    existing = set(await admin.list_topics())
    missing = [NewTopic(t, partitions, replicas, topic_configs=config or {})
               for t in names if t not in existing]
    if missing:
        await admin.create_topics(missing)
        log.info("created topics %s", ", ".join(t.name for t in missing))


async def partition_count(admin: AIOKafkaAdminClient, topic: str, timeout: float = 30) -> int:
    """How many partitions `topic` has, once the broker knows them: Apache Kafka tells of a
    topic just created (here, or by a worker starting beside this one) a moment later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        [described] = await admin.describe_topics([topic])
        if described["error_code"] == 0 and described["partitions"]:
            return len(described["partitions"])
        if loop.time() > deadline:
            raise RuntimeError(f"{topic} has no partitions after {timeout:.0f} s (error code "
                               f"{described['error_code']})")
        await asyncio.sleep(0.1)


def transactional_producer(settings: Settings) -> Any:
    """How the exactly-once producers are made: as Faust makes its producer (batching), and
    idempotent with acks from all in-sync replicas, as transactions require."""

    def new(transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5,
                                max_batch_size=1 << 20, acks="all", enable_idempotence=True,
                                transactional_id=transactional_id,
                                **settings.kafka.client_options())

    return new


def refuse_without_transactions(settings: Settings) -> None:
    """Contract §4: exactly once on a broker without transactions (Tansu) stops the worker at
    start, saying why."""
    reason = asyncio.run(supports_transactions(
        settings.bootstrap, f"{settings.app_id}-eos-probe", transactional_producer(settings)))
    if reason is not None:
        raise SystemExit(
            f"dunning worker: --guarantee exactly_once needs a broker with transactions, and "
            f"{settings.broker} has none: {reason}. Run it with --guarantee at_least_once "
            f"(the default), or on Apache Kafka.")


def build_app(settings: Settings, policy: Policy, partitions: int,
              database_url: str | None = None) -> DunningApp:
    app = DunningApp(
        settings.app_id,
        broker=settings.broker,
        store="memory://",
        datadir=f"{settings.data_dir}/{settings.app_id}-data",
        autodiscover=False,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        # The topics Faust creates (its assignor's, a changelog made before ensure_topics
        # did) get the same replicas; Faust makes changelogs compacted.
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=5000,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 10),
        # Output and state count as written once every in-sync replica has them: with
        # min.insync.replicas 2, losing a broker loses nothing acknowledged.
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=1 << 20,
        table_standby_replicas=0,
        web_port=settings.web_port,
        web_bind="0.0.0.0",
        web_host=settings.web_host,  # how other workers reach this one's web views
        broker_credentials=faust_credentials(settings.kafka),
    )
    app.batch_handlers = {}
    transactions = None
    if settings.exactly_once:
        transactions = app.transactions = Transactions(settings.app_id, app.conf.id,
                                                       transactional_producer(settings))
    # From a revocation until Faust has restored the tables for the new assignment, state is
    # not whole: the batch consumer holds records back until then.
    app.tables_ready = False  # type: ignore[attr-defined]
    app.fetch_max_wait = settings.fetch_max_wait  # type: ignore[attr-defined]
    metrics = Metrics()
    # Keys and values are bytes, raw on the changelog: tables.state encodes the rows.
    invoices = app.Table(TABLES[0], partitions=partitions, key_type=bytes, value_type=bytes)
    subjects = app.Table(TABLES[1], partitions=partitions, key_type=bytes, value_type=bytes)
    producer = app.producer
    prefix = settings.output_prefix
    gate = TickGate(settings.bootstrap, app.conf.id,  # Faust's group id
                    settings.kafka.client_options())
    sequencer = Sequencer(producer, settings.app_id, partitions, metrics, prefix, gate,
                          transactions)

    @app.on_before_shutdown.connect
    async def close_gate(sender: Any, **kwargs: Any) -> None:
        await gate.close()
        if transactions is not None:
            await transactions.close()

    def ready() -> bool:
        return bool(app.tables_ready)  # type: ignore[attr-defined]

    invoice_agent = InvoiceAgent(producer, invoices, policy, settings.app_id, partitions, metrics,
                                 ready, prefix, settings.max_tick_jump, transactions)
    subject_agent = SubjectAgent(producer, subjects, partitions, metrics, ready, prefix,
                                 transactions)
    events = wire.events_topic(settings.app_id)
    signals = wire.signals_topic(settings.app_id)
    for topic in INPUTS:
        app.batch_handlers[topic] = sequencer.handle
    app.batch_handlers[events] = invoice_agent.handle
    app.batch_handlers[signals] = subject_agent.handle

    # Agents subscribe their topics in the group; their records reach the handlers above.
    for name, topics in (("sequencer", INPUTS), ("invoices", (events,)),
                         ("subjects", (signals,))):
        channel = app.topic(*topics, key_serializer="raw", value_serializer="raw")
        app.agent(channel, name=name)(_batched)

    state = {"assigned": False}

    def snapshot() -> Snapshot:
        s = Snapshot(last_tick=invoice_agent.last_tick)
        for engine in list(invoice_agent.engines.values()):
            s.scheduled += len(engine.schedule)
            s.invoices.update(inv.status for inv in engine.invoices.values())
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic in app.batch_handlers:
                committed = consumer._committed_offset.get(tp) or 0
                try:
                    end = consumer.highwater(tp) or 0
                except Exception:  # no fetch for it yet
                    end = committed
                s.lag[(tp.topic, tp.partition)] = max(0, end - committed)
        return s

    metrics.watch(snapshot)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        app.tables_ready = False  # type: ignore[attr-defined]
        # Batches still finishing write their state and offsets while we own the partitions.
        await app.consumer.finish_all()
        gate.forget(revoked)
        invoice_agent.forget({tp.partition for tp in revoked if tp.topic == events})
        subject_agent.forget({tp.partition for tp in revoked if tp.topic == signals})

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        state["assigned"] = True

    @app.on_rebalance_complete.connect
    async def on_recovered(sender: Any, **kwargs: Any) -> None:
        app.tables_ready = True  # type: ignore[attr-defined]

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        if state["assigned"] and app.tables_ready:  # type: ignore[attr-defined]
            return web.json({"status": "ok", "partitions": sorted(invoice_agent.engines)})
        return web.json({"status": "starting"}, status=503)

    @app.page("/invoices/{invoice_id}")
    async def invoice(web: Any, request: Any, invoice_id: str) -> Any:
        refused = _refused(request, settings.web_token)
        if refused is not None:
            return refused
        found = invoice_agent.find(invoice_id)
        if found is None:
            # Another worker may own the invoice's partition: ask it (Faust's table routing;
            # the changelog partition of an invoice is where its id hashes).
            try:
                return await app.router.route_req("invoices", invoice_id.encode(), web, request)
            except (SameNode, ServiceUnavailable, KeyError, OSError):
                return web.json({"error": f"no invoice {invoice_id}"}, status=404)
        inv, clock = found
        return web.json({**invoice_view(inv), "status_now": inv.status_at(clock)})

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.registry), content_type=EXPOSITION)

    if database_url is not None:
        ledger = Ledger(settings.bootstrap, f"{settings.app_id}-ledger", database_url,
                        settings.rebalance_timeout, settings.session_timeout,
                        invoices.changelog_topic.get_topic_name(), settings.output_prefix,
                        lambda dl: metrics.dead_letters.labels(dl.error).inc(),
                        settings.kafka.client_options(),
                        "read_committed" if settings.exactly_once else "read_uncommitted")

        @app.task
        async def record_commands() -> None:
            """The command ledger, on a consumer of its own: PostgreSQL being slow or away
            holds up the ledger, never the stream processing."""
            await ledger.run()

    app.dunning = {  # type: ignore[attr-defined]
        "metrics": metrics, "invoices": invoice_agent, "subjects": subject_agent,
    }
    return app


def faust_credentials(security: BrokerSecurity) -> Any:
    """The same TLS and SASL settings in Faust's terms, for every client Faust makes."""
    if security.sasl_mechanism:
        return faust.SASLCredentials(username=security.username, password=security.password,
                                     ssl_context=security.ssl_context(),
                                     mechanism=security.sasl_mechanism)
    if security.tls:
        return faust.SSLCredentials(security.ssl_context())
    return None


def _refused(request: Any, token: str | None) -> Any:
    """Contract §4: an invoice is personal data. With a token, a request must carry it
    (`Authorization: Bearer TOKEN`, compared in constant time; another worker routing a
    request passes it on, as Faust forwards the headers); without one, only clients on the
    loopback interface are answered."""
    if token is not None:
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, b"Bearer " + token.encode()):
            return None
        return aiohttp_web.json_response(
            {"error": "this view needs Authorization: Bearer <the worker's --web-token>"},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="dunning"'})
    try:
        loopback = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return aiohttp_web.json_response(
        {"error": "without --web-token this view answers only clients on this machine's "
                  "loopback interface"}, status=403)


async def _batched(stream: Any) -> None:
    """Never sees a record: the batch consumer hands this agent's topics to its handler."""
    async for _ in stream:
        raise RuntimeError("a batched topic's record reached Faust's stream")


class DunningWorker(faust.Worker):
    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # aiokafka formats a debug record for every message it sends: a fifth of the worker's
        # time when its logger lets debug through. Its debug output is not ours to show.
        logging.getLogger("aiokafka").setLevel(max(level, logging.INFO))


def run_worker(settings: Settings, policy: Policy) -> None:
    os.makedirs(settings.data_dir, exist_ok=True)
    if settings.exactly_once:
        refuse_without_transactions(settings)
    partitions = asyncio.run(ensure_topics(settings))
    url = settings.database_url or embedded_url(settings.data_dir, database_name(settings.app_id))
    try:
        asyncio.run(prepare(url))
    except DatabaseError as exc:
        raise SystemExit(f"dunning worker: {exc}") from None
    app = build_app(settings, policy, partitions, url)
    worker = DunningWorker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
