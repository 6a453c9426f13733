"""The whole collection engine in one process: invoices, held orphans, subjects, schedule.

Still pure: time comes only from ticks, and the only effects are the returned commands. This is
the reference the streaming worker is checked against, and what tests and benchmarks drive.
"""

from __future__ import annotations

import heapq
import traceback
from dataclasses import dataclass, field
from typing import Any

from dunning.config.policy import Policy
from dunning.rules import model as m
from dunning.rules.invoice import Invoice, Out, Signal, advance, apply, issue
from dunning.rules.schedule import Schedule
from dunning.rules.subject import Subject, apply_signals
from dunning.rules.times import DAY, MAX_TIME, format_time
from dunning.rules.undo import Copier

ORPHAN_DAYS = 7


@dataclass(slots=True)
class Result:
    """What one input record did: its outcome, the commands and the dead letters it caused."""

    outcome: str
    commands: list[m.Command] = field(default_factory=list)
    dead_letters: list[m.DeadLetter] = field(default_factory=list)


@dataclass(slots=True)
class Held:
    """Events that arrived before their invoice; `held_at` is None until the first tick."""

    event: m.Event
    held_at: int | None


class _Reject(Exception):
    """An event the rules find cannot be right once applied: undone and dead-lettered."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error, self.reason = error, reason


# The slots of an invoice the rules change in place (the rest are replaced whole).
INVOICE_STATE = Copier(Invoice, ("actions", "payments", "seen", "parked"), fixed=(
    "invoice_id", "customer_id", "currency", "issued_at", "issued_by", "order_id",
    "reseller_id", "request_id", "debit", "notify_reseller", "threshold", "fee_fixed",
    "fee_percent", "charge_retry", "calendar"))


def internal_error(source: m.Source | None, exc: BaseException, what: str = "") -> m.DeadLetter:
    """The dead letter of a record whose processing raised: the error and where it arose."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno} in {where.name})" \
        if where else ""
    reason = f"processing {what}failed: {type(exc).__name__}: {exc}"[:400] + at
    return m.DeadLetter(source or m.Source(""), m.INTERNAL_ERROR, reason)


class Engine:
    def __init__(self, policy: Policy, orphan_days: int = ORPHAN_DAYS,
                 max_tick_jump: int = 0) -> None:
        self.policy = policy
        self.orphan_after = orphan_days * DAY
        # Contract §4: a tick moving logical time further than this at once is refused unless
        # confirmed (seconds; 0 = no guard, as simulations that jump months want).
        self.max_tick_jump = max_tick_jump
        self.clock = 0  # logical now: the newest tick seen; 0 before the first
        self.invoices: dict[str, Invoice] = {}
        self.held: dict[str, list[Held]] = {}
        self.subjects: dict[str, Subject] = {}
        self.schedule = Schedule()
        self._unclocked: set[str] = set()
        # Invoice ids whose state or held events changed, when a caller wants to know (the
        # streaming worker writes just those to its table); None: not tracked.
        self.touched: set[str] | None = None

    # -- input ---------------------------------------------------------------------------

    def handle(self, event: m.Event) -> Result:
        """One event, already validated at the edge (`streams.codec.feed` decodes and hands
        it here)."""
        outcome, out = self.step(event)
        commands = out.commands
        if out.signals:
            def failed(sig: Signal, exc: Exception) -> None:  # that subject stays as it was
                out.dead_letters.append(
                    internal_error(event.source, exc, f"the signal to {sig.subject_key} "))

            commands += apply_signals(self._subject, out.signals, failed)
        return Result(outcome, commands, out.dead_letters)

    def step(self, event: m.Event) -> tuple[str, Out]:
        """The invoice side of one event: its outcome, commands, and the signals for subjects,
        not yet applied (the streaming worker sends them to the subjects' partitions)."""
        out = Out()
        if isinstance(event, m.ClockTick):
            return self._tick(event, out), out
        iid = event.invoice_id
        kept = self._keep(iid)
        try:
            return self._event(event, out), out
        except _Reject as exc:
            self._put_back(iid, kept)
            return m.DEAD_LETTERED, Out(dead_letters=[
                m.DeadLetter(event.source or m.Source(""), exc.error, exc.reason)])
        except Exception as exc:  # no record can stop the worker (contract §2)
            self._put_back(iid, kept)
            return m.DEAD_LETTERED, Out(dead_letters=[internal_error(event.source, exc)])

    def _keep(self, iid: str) -> tuple[Any, ...]:
        """What one event may change of an invoice, to put back if it fails."""
        inv = self.invoices.get(iid)
        held = self.held.get(iid)
        return (None if inv is None else INVOICE_STATE.copy(inv),
                None if held is None else list(held), self.schedule.at(iid),
                iid in self._unclocked)

    def _put_back(self, iid: str, kept: tuple[Any, ...]) -> None:
        state, held, at, unclocked = kept
        if state is None:
            self.invoices.pop(iid, None)
        else:
            INVOICE_STATE.restore(self.invoices[iid], state)
        if held is None:
            self.held.pop(iid, None)
        else:
            self.held[iid] = held
        self.schedule.set(iid, at)
        if unclocked:
            self._unclocked.add(iid)
        else:
            self._unclocked.discard(iid)

    def _subject(self, sig: Signal) -> Subject:
        subj = self.subjects.get(sig.subject_key)
        if subj is None:
            subj = self.subjects[sig.subject_key] = Subject(sig.subject_kind, sig.subject_id)
        return subj

    # -- events --------------------------------------------------------------------------

    def _event(self, event: m.Event, out: Out) -> str:
        iid = event.invoice_id
        if self.touched is not None:
            self.touched.add(iid)
        inv = self.invoices.get(iid)
        if inv is not None:
            outcome = apply(inv, event, self.clock, out)
            if isinstance(event, m.InvoiceUpdated) and outcome == m.APPLIED:
                _check_dates(inv)
        elif isinstance(event, m.InvoiceIssued):
            terms = self.policy.terms(event.document, event.customer_class, event.kind,
                                      event.product)
            # What waited for this invoice applies now, in the order it arrived.
            early = [held.event for held in self.held.pop(iid, ())]
            inv = self.invoices[iid] = issue(event, terms, self.clock, out, early)
            self._unclocked.discard(iid)
            _check_dates(inv)
            outcome = m.APPLIED
        else:
            return self._hold(event)
        self.schedule.set(iid, inv.next_at())
        return outcome

    def _hold(self, event: m.Event) -> str:
        waiting = self.held.setdefault(event.invoice_id, [])
        if any(h.event.event_id == event.event_id for h in waiting):
            return m.DUPLICATE
        waiting.append(Held(event, self.clock or None))
        if self.clock:
            self._schedule_expiry(event.invoice_id)
        else:
            self._unclocked.add(event.invoice_id)
        return m.HELD

    def _schedule_expiry(self, iid: str) -> None:
        times = [h.held_at for h in self.held.get(iid, ()) if h.held_at is not None]
        self.schedule.set(iid, min(times) + self.orphan_after if times else None)

    # -- time ----------------------------------------------------------------------------

    def _tick(self, tick: m.ClockTick, out: Out) -> str:
        now = tick.now
        if now < self.clock:
            return m.IGNORED  # logical time never goes backwards
        if self.clock and self.max_tick_jump and now - self.clock > self.max_tick_jump \
                and not tick.confirmed:
            # One wrong tick (a year 9000 typo) would fire every pending suspension and
            # deletion at once, and deletion is irreversible (contract §4).
            out.dead_letters.append(m.DeadLetter(
                tick.source or m.Source(""), m.CLOCK_JUMP,
                f"the tick would move logical time from {format_time(self.clock)} to "
                f"{format_time(now)}, {(now - self.clock) / DAY:.1f} days at once; the limit "
                f"is {self.max_tick_jump / DAY:g} days (--max-tick-jump). If it is meant, "
                "send it again with the header dunning.confirm: jump"))
            return m.DEAD_LETTERED
        self.clock = now
        popped: list[str] = []
        try:
            self._fire_due(tick, popped, out)
        except Exception as exc:  # outside any one invoice's rules: keep what was done, and
            # leave none of the due invoices unscheduled (they are tried again next tick)
            for iid in popped:
                inv = self.invoices.get(iid)
                if inv is not None:
                    self.schedule.set(iid, inv.next_at())
                elif iid in self.held:
                    self._schedule_expiry(iid)
            out.dead_letters.append(internal_error(tick.source, exc, "the tick "))
        return m.APPLIED

    def _fire_due(self, tick: m.ClockTick, popped: list[str], out: Out) -> None:
        """Everything a tick makes due; `popped` gets the ids taken off the schedule."""
        now = tick.now
        touched = self.touched
        for iid in self._unclocked:  # orphans held before the first tick start their wait now
            if touched is not None:
                touched.add(iid)
            for held in self.held.get(iid, ()):
                held.held_at = now
            self._schedule_expiry(iid)
        self._unclocked.clear()
        # Fire what is due in time order across invoices, one instant of one invoice at a
        # time: after a jump of days, invoices sharing a subject must reach it in the order
        # their actions fell due (a limit before another invoice's suspension, and so on).
        due: list[tuple[int, str]] = []
        popped += self.schedule.pop_due(now)
        for iid in popped:
            if touched is not None:
                touched.add(iid)
            inv = self.invoices.get(iid)
            if inv is None:
                self._expire(iid, now, out)
            else:
                at = inv.next_at()
                if at is not None:
                    due.append((at, iid))
        heapq.heapify(due)
        # An invoice whose rules raise is put back as it was before this tick, without what
        # it emitted in it, and tried again at the next tick.
        before: dict[str, list[Any]] = {}
        while due:
            at, iid = heapq.heappop(due)
            inv = self.invoices[iid]
            if iid not in before:
                before[iid] = INVOICE_STATE.copy(inv)
            signals = len(out.signals)
            try:
                advance(inv, now, tick.event_id, out, until=at)
            except Exception as exc:
                self._undo_tick(iid, before[iid], out)
                out.dead_letters.append(internal_error(tick.source, exc, f"invoice {iid} "))
                continue
            out.signal_at += [at] * (len(out.signals) - signals)
            following = inv.next_at()
            if following is not None and following <= now:
                heapq.heappush(due, (following, iid))
            else:
                self.schedule.set(iid, following)

    def _undo_tick(self, iid: str, state: list[Any], out: Out) -> None:
        """Take back what invoice `iid` did in this tick: its state, and its commands (an
        invoice's are keyed by its id) and signals (the failing step's have no `signal_at`
        yet; the rest are found by invoice)."""
        inv = self.invoices[iid]
        INVOICE_STATE.restore(inv, state)
        del out.signals[len(out.signal_at):]
        out.commands[:] = [c for c in out.commands if c.key != iid]
        kept = [(s, at) for s, at in zip(out.signals, out.signal_at, strict=True)
                if s.invoice_id != iid]
        out.signals[:] = [s for s, _ in kept]
        out.signal_at[:] = [at for _, at in kept]
        self.schedule.set(iid, inv.next_at())  # still due: tried again at the next tick

    def _expire(self, iid: str, now: int, out: Out) -> None:
        waiting = self.held.get(iid, [])
        keep = []
        for held in waiting:
            assert held.held_at is not None
            if held.held_at + self.orphan_after <= now:
                out.dead_letters.append(m.DeadLetter(
                    held.event.source or m.Source(""), m.ORPHAN,
                    f"no invoice {iid} arrived within {self.orphan_after // DAY} days of "
                    f"logical time after this {held.event.type}",
                ))
            else:
                keep.append(held)
        if keep:
            self.held[iid] = keep
        else:
            self.held.pop(iid, None)
        self._schedule_expiry(iid)


def _check_dates(inv: Invoice) -> None:
    """Every date an invoice is issued with must print as an RFC 3339 time (the contract's
    input range, years 1970 to 9998, still lets a policy's days run past 9999)."""
    times = [inv.due_at, inv.charge_at, inv.next_reminder, *(at for at, _, _ in inv.actions)]
    if max(t for t in times if t is not None) > MAX_TIME:
        raise _Reject(m.INVALID_FIELD, "the invoice's collection dates (due date and the "
                                       "policy's stages) run past the year 9998")
