"""The whole collection engine in one process: invoices, held orphans, subjects, schedule.

Still pure: time comes only from ticks, and the only effects are the returned commands. This is
the reference the streaming worker is checked against, and what tests and benchmarks drive.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from dunning.config.policy import Policy
from dunning.rules import model as m
from dunning.rules.invoice import Invoice, Out, Signal, advance, apply, issue
from dunning.rules.schedule import Schedule
from dunning.rules.subject import Subject, apply_signal, apply_signals
from dunning.rules.times import DAY

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


class Engine:
    def __init__(self, policy: Policy, orphan_days: int = ORPHAN_DAYS) -> None:
        self.policy = policy
        self.orphan_after = orphan_days * DAY
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
            commands += apply_signals(self._subject, out.signals)
        return Result(outcome, commands, out.dead_letters)

    def step(self, event: m.Event) -> tuple[str, Out]:
        """The invoice side of one event: its outcome, commands, and the signals for subjects,
        not yet applied (the streaming worker sends them to the subjects' partitions)."""
        out = Out()
        if isinstance(event, m.ClockTick):
            return self._tick(event, out), out
        return self._event(event, out), out

    def signal(self, sig: Signal) -> list[m.Command]:
        return apply_signal(self._subject(sig), sig)[1]

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
        elif isinstance(event, m.InvoiceIssued):
            terms = self.policy.terms(event.document, event.customer_class, event.kind,
                                      event.product)
            # What waited for this invoice applies now, in the order it arrived.
            early = [held.event for held in self.held.pop(iid, ())]
            inv = self.invoices[iid] = issue(event, terms, self.clock, out, early)
            self._unclocked.discard(iid)
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
        self.clock = now
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
        for iid in self.schedule.pop_due(now):
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
        while due:
            at, iid = heapq.heappop(due)
            inv = self.invoices[iid]
            signals = len(out.signals)
            advance(inv, now, tick.event_id, out, until=at)
            out.signal_at += [at] * (len(out.signals) - signals)
            following = inv.next_at()
            if following is not None and following <= now:
                heapq.heappush(due, (following, iid))
            else:
                self.schedule.set(iid, following)
        return m.APPLIED

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
