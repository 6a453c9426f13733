"""The policy file (contract §3): layered TOML resolved to the terms of one invoice."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from dunning.rules.calendar import ALL_DAYS, WEEKDAYS, Calendar, zone
from dunning.rules.money import ZERO, is_currency, parse_amount, quantize

AutoCharge = Literal["off", "on_issue", "on_due"]
# An amount for every currency (rounded to each one's minor unit), or a table by currency in
# which a currency not listed has that stage off (contract §3).
Amount = Decimal | dict[str, Decimal]
MAX_DAYS = 3650  # contract §2: day counts lie within 0 to 3 650 days


class PolicyError(ValueError):
    """An invalid policy: names the key (with its section) and why."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Terms:
    """The resolved collection terms for one kind of invoice. None (or empty) = stage off."""

    terms_days: int = 30
    auto_charge: AutoCharge = "off"
    charge_retry_days: tuple[int, ...] = ()
    due_soon_days: tuple[int, ...] = ()
    reminder_every_days: int | None = None
    collection_threshold: Amount = Decimal("0.00")
    late_fee: Amount | None = None
    late_fee_percent: Decimal | None = None
    late_fee_after_days: int = 0
    limit_after_days: int | None = None
    suspend_after_days: int | None = None
    delete_after_days: int | None = None
    request_cancel_after_days: int | None = None
    notify_reseller: bool = False
    calendar: Calendar | None = None  # v1.1 business calendar; None: any day, any hour

    def late_fee_in(self, currency: str) -> Decimal | None:
        """The fixed late fee for an invoice in `currency`; None: no fixed fee."""
        return _amount_in(self.late_fee, currency)

    def threshold_in(self, currency: str) -> Decimal:
        """The collection threshold in `currency`; a currency a table does not list has none."""
        found = _amount_in(self.collection_threshold, currency)
        return quantize(ZERO, currency) if found is None else found


def _amount_in(value: Amount | None, currency: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(currency)  # validated in the currency's places
    return quantize(value, currency)


# Which keys take `false` to mean "this stage is off", and what off is.
_OFF: dict[str, Any] = {
    "reminder_every_days": None,
    "late_fee": None,
    "late_fee_percent": None,
    "limit_after_days": None,
    "suspend_after_days": None,
    "delete_after_days": None,
    "request_cancel_after_days": None,
    "due_soon_days": (),
    "charge_retry_days": (),
    "auto_charge": "off",
}
# Keys that always apply, so `false` is a mistake rather than "off": what to write instead.
_NO_OFF = {
    "terms_days": "give the days to pay (0 = due on issue)",
    "collection_threshold": 'give an amount ("0.00" = collect any balance)',
    "late_fee_after_days": "give the days after due (0 = at once); turn the fee off with "
                           "late_fee = false",
}
KEYS = tuple(f.name for f in fields(Terms) if f.name != "calendar")
DEBIT_NOTE_KEYS = ("terms_days", "reminder_every_days", "notify_reseller")
KINDS = ("regular", "out_of_turn")
_FEE = ("late_fee", "late_fee_percent")
# LogicBoxes: every debit note reminds every 5 days unless the [debit_note] section says else.
_DEBIT_BUILTIN = {"reminder_every_days": 5}


def _days(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number of days, got {value!r}")
    if value < minimum:
        raise ValueError(f"must be at least {minimum} day{'s' if minimum != 1 else ''}, "
                         f"got {value}")
    if value > MAX_DAYS:
        raise ValueError(f"must be at most {MAX_DAYS} days (ten years), got {value}")
    return value


def _day_list(value: Any, minimum: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of whole days such as [3, 5], got {value!r}")
    return tuple(_days(v, minimum) for v in value)


def _due_soon_days(value: Any) -> tuple[int, ...]:
    if isinstance(value, list) and any(v == 0 and type(v) is int for v in value):
        raise ValueError("a due-soon notice comes before due, so at least 1 day before it "
                         "(at due_at the overdue stage speaks), got 0")
    days = _day_list(value, 1)
    for d in days:
        if days.count(d) > 1:
            raise ValueError(f"lists {d} twice; each entry is one notice, d days before due")
    return days


def _money(value: Any, positive: bool, currency: str | None = None) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"money must be a string such as \"5.00\", not {type(value).__name__} "
                         f"{value!r}")
    amount = parse_amount(value, currency)
    if positive and amount <= 0:
        raise ValueError(f"must be greater than zero, got {value!r}")
    return amount if currency is None else quantize(amount, currency)


class _EntryError(ValueError):
    """A bad entry of a table by currency: the key it names is `key.CURRENCY`."""

    def __init__(self, currency: str, reason: str) -> None:
        super().__init__(reason)
        self.currency = currency


def _amount(value: Any, positive: bool) -> Amount:
    """A plain amount, or a table by currency such as { USD = "5.00", JPY = "500" }."""
    if not isinstance(value, dict):
        return _money(value, positive)
    table: dict[str, Decimal] = {}
    for currency, entry in value.items():
        if not is_currency(currency):
            raise _EntryError(currency, "not an ISO 4217 currency code such as USD")
        try:
            table[currency] = _money(entry, positive, currency)
        except ValueError as exc:
            raise _EntryError(currency, str(exc)) from None
    return table


def _percent(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"a percentage must be a string such as \"1.5\", not "
                         f"{type(value).__name__} {value!r}")
    pct = parse_amount(value)
    if not 0 < pct <= 100:
        raise ValueError(f"must be more than 0 and at most 100, got {value!r}")
    return pct


def _auto_charge(value: Any) -> str:
    if value is False:
        return "off"
    if value not in ("off", "on_issue", "on_due"):
        raise ValueError(f"must be \"off\", \"on_issue\" or \"on_due\", got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


_PARSERS: dict[str, Any] = {
    "terms_days": lambda v: _days(v, 0),
    "auto_charge": _auto_charge,
    # Repeated retry days are intervals ([3, 3]: every 3 days), so they are allowed.
    "charge_retry_days": lambda v: _day_list(v, 1),
    "due_soon_days": _due_soon_days,
    "reminder_every_days": lambda v: _days(v, 1),
    "collection_threshold": lambda v: _amount(v, positive=False),
    "late_fee": lambda v: _amount(v, positive=True),
    "late_fee_percent": _percent,
    "late_fee_after_days": lambda v: _days(v, 0),
    "limit_after_days": lambda v: _days(v, 0),
    "suspend_after_days": lambda v: _days(v, 0),
    "delete_after_days": lambda v: _days(v, 0),
    "request_cancel_after_days": lambda v: _days(v, 0),
    "notify_reseller": _bool,
}


# -- the business calendar (v1.1): [calendar] and [class.NAME.calendar] ----------------------

CALENDAR_KEYS = ("time_zone", "enforce_on", "holidays", "notice_hours")


def _time_zone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be an IANA time zone name such as \"Europe/Berlin\", "
                         f"got {value!r}")
    try:
        zone(value)
    except (KeyError, ValueError, OSError):  # not found, a path, a directory ("Europe")
        raise ValueError(f"unknown time zone {value!r}; give an IANA name such as "
                         f"\"Europe/Berlin\"") from None
    return value


def _enforce_on(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of days such as [\"mon\", \"tue\"], "
                         f"got {value!r}")
    days: list[int] = []
    for name in value:
        if name not in WEEKDAYS:
            raise ValueError(f"{name!r} is not a day; days are {', '.join(WEEKDAYS)}")
        if WEEKDAYS.index(name) in days:
            raise ValueError(f"lists {name!r} twice")
        days.append(WEEKDAYS.index(name))
    return frozenset(days)


def _holidays(value: Any) -> frozenset[date]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of dates such as [\"2027-12-24\"], got {value!r}")
    days: set[date] = set()
    for entry in value:
        day = entry if type(entry) is date else None  # a bare TOML date is fine too
        if isinstance(entry, str):
            try:
                day = date.fromisoformat(entry) if len(entry) == 10 else None
            except ValueError:
                day = None
        if day is None:
            raise ValueError(f"{entry!r} is not a date written YYYY-MM-DD")
        if day in days:
            raise ValueError(f"lists {day.isoformat()} twice")
        days.add(day)
    return frozenset(days)


def _clock_time(text: Any, allow_end: bool) -> int:
    """\"HH:MM\" as minutes after midnight; \"24:00\" (end of day) only as an end."""
    ok = isinstance(text, str) and len(text) == 5 and text[2] == ":" \
        and text[:2].isascii() and text[:2].isdigit() and text[3:].isdigit() \
        and text[3:].isascii()
    if ok:
        hours, minutes = int(text[:2]), int(text[3:])
        if minutes < 60 and (hours < 24 or (allow_end and hours == 24 and minutes == 0)):
            return hours * 60 + minutes
    raise ValueError(f"{text!r} is not a local time written HH:MM (00:00 to 23:59"
                     f"{', or 24:00 as the end' if allow_end else ''})")


def _notice_hours(value: Any) -> tuple[int, int] | None:
    if value is False:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"must be a window of two local times such as [\"08:00\", \"20:00\"], "
                         f"or false, got {value!r}")
    start, end = _clock_time(value[0], False), _clock_time(value[1], True)
    if start >= end:
        raise ValueError(f"the window must end after it starts on the same day, got "
                         f"{value[0]!r} to {value[1]!r}")
    return (start, end)


_CALENDAR_PARSERS: dict[str, Any] = {
    "time_zone": _time_zone,
    "enforce_on": _enforce_on,
    "holidays": _holidays,
    "notice_hours": _notice_hours,
}


def _calendar_layer(source: str, section: str, value: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in _table(source, section, value).items():
        where = f"[{section}] {key}"
        if key not in CALENDAR_KEYS:
            raise PolicyError(source, where, f"unknown key; a calendar takes "
                              f"{', '.join(CALENDAR_KEYS)}")
        try:
            values[key] = _CALENDAR_PARSERS[key](raw)
        except ValueError as exc:
            raise PolicyError(source, where, str(exc)) from None
    return values


# A layer's address: ("defaults",), ("debit_note",), ("class", NAME), ("class", NAME, KIND) or
# ("product", NAME). Tuples, not dotted strings, so a quoted name holding a dot (class "x.regular")
# cannot land on another class's layer.
LayerKey = tuple[str, ...]


class Policy:
    """A validated policy file. `terms()` resolves (and caches) the layers for an invoice."""

    def __init__(self, source: str, layers: dict[LayerKey, dict[str, Any]],
                 calendars: dict[LayerKey, dict[str, Any]] | None = None) -> None:
        self.source = source
        self.layers = layers  # layer address -> its validated values
        # ("calendar",) and ("class", NAME) -> validated [calendar] keys (v1.1)
        self.calendars = calendars or {}
        self._cache: dict[tuple[str, str | None, str, str | None], Terms] = {}

    @property
    def classes(self) -> list[str]:
        return sorted({k[1] for k in self.layers if k[0] == "class"})

    @property
    def products(self) -> list[str]:
        return sorted(k[1] for k in self.layers if k[0] == "product")

    def terms(
        self,
        document: str = "invoice",
        customer_class: str | None = None,
        kind: str = "regular",
        product: str | None = None,
    ) -> Terms:
        # Called once per issued invoice (millions a run); the combinations are few, so cache.
        key = (document, customer_class, kind, product)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(*key)
        return found

    def _resolve(self, document: str, customer_class: str | None, kind: str,
                 product: str | None) -> Terms:
        get = self.layers.get
        layers: list[dict[str, Any]]
        if document == "debit_note":
            # The built-in 5 days sits above [defaults], so a default reminder never reaches them.
            layers = [get(("defaults",), {}), _DEBIT_BUILTIN, get(("debit_note",), {})]
        else:
            layers = [get(("defaults",), {})]
            if customer_class is not None:
                layers += [get(("class", customer_class), {}),
                           get(("class", customer_class, kind), {})]
            if product is not None:
                layers.append(get(("product", product), {}))
        values: dict[str, Any] = {}
        for layer in layers:
            if "late_fee" in layer or "late_fee_percent" in layer:
                # One stage: the most specific layer that sets either kind of fee decides.
                values.pop("late_fee", None)
                values.pop("late_fee_percent", None)
            values.update(layer)
        return Terms(**values, calendar=self._calendar(
            None if document == "debit_note" else customer_class))

    def _calendar(self, customer_class: str | None) -> Calendar | None:
        """[calendar], with a class's [class.NAME.calendar] keys over it; None if neither."""
        found = [self.calendars.get(("calendar",))]
        if customer_class is not None:
            found.append(self.calendars.get(("class", customer_class)))
        values: dict[str, Any] = {}
        for layer in found:
            if layer is not None:
                values.update(layer)
        if not any(layer is not None for layer in found):
            return None
        return Calendar(time_zone=values.get("time_zone", "UTC"),
                        enforce_on=values.get("enforce_on", ALL_DAYS),
                        holidays=values.get("holidays", frozenset()),
                        notice_hours=values.get("notice_hours"))


def _section_keys(section: str) -> tuple[str, ...]:
    return DEBIT_NOTE_KEYS if section == "debit_note" else KEYS


def _layer(source: str, section: str, table: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in table.items():
        where = f"[{section}] {key}"
        if key not in KEYS:
            raise PolicyError(source, where, f"unknown key; known keys: {', '.join(KEYS)}")
        if key not in _section_keys(section):
            raise PolicyError(source, where, "debit notes get reminder days only (rule 13); "
                              f"[debit_note] takes {', '.join(DEBIT_NOTE_KEYS)}")
        if raw is False and key in _OFF:
            values[key] = _OFF[key]
            continue
        if raw is False and key in _NO_OFF:
            raise PolicyError(source, where, f"cannot be turned off with false; {_NO_OFF[key]}")
        try:
            values[key] = _PARSERS[key](raw)
        except _EntryError as exc:
            raise PolicyError(source, f"{where}.{exc.currency}", str(exc)) from None
        except ValueError as exc:
            raise PolicyError(source, where, str(exc)) from None
    if all(values.get(k) is not None for k in _FEE):
        raise PolicyError(source, f"[{section}] late_fee", "late_fee and late_fee_percent are "
                          "both set; a late fee is one or the other (set the other to false)")
    return values


def _table(source: str, section: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(source, f"[{section}]", f"must be a table, got {value!r}")
    return value


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Validate a policy file's text. Raises PolicyError naming the key and the reason."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, "(file)", f"not valid TOML: {exc}") from None
    layers: dict[LayerKey, dict[str, Any]] = {}
    calendars: dict[LayerKey, dict[str, Any]] = {}
    for name, value in doc.items():
        if name == "calendar":
            calendars[(name,)] = _calendar_layer(source, name, value)
        elif name in ("defaults", "debit_note"):
            layers[(name,)] = _layer(source, name, _table(source, name, value))
        elif name in ("class", "product"):
            for sub, table in _table(source, name, value).items():
                section = f"{name}.{sub}"
                table = dict(_table(source, section, table))
                if name == "class" and "calendar" in table:
                    calendars[(name, sub)] = _calendar_layer(
                        source, f"{section}.calendar", table.pop("calendar"))
                if name == "class":
                    # A table under a key (late_fee = { USD = "5.00" }) is a value, not a kind.
                    kinds = [k for k, v in table.items()
                             if k in KINDS or (isinstance(v, dict) and k not in KEYS)]
                    for kind in kinds:
                        if kind not in KINDS:
                            raise PolicyError(source, f"[{section}.{kind}]", "a class has only "
                                              "the sub-tables regular and out_of_turn (and "
                                              "calendar)")
                        kind_section = f"{section}.{kind}"
                        layers[(name, sub, kind)] = _layer(
                            source, kind_section, _table(source, kind_section, table.pop(kind)))
                layers[(name, sub)] = _layer(source, section, table)
        elif not isinstance(value, dict):
            # A bare `key = value` above the first section header.
            raise PolicyError(source, name, "a key outside any section; put it under [defaults] "
                              "(or the section it belongs to)")
        else:
            raise PolicyError(source, f"[{name}]", "unknown section; sections are [defaults], "
                              "[debit_note], [class.NAME], [class.NAME.regular], "
                              "[class.NAME.out_of_turn], [product.NAME], [calendar] and "
                              "[class.NAME.calendar]")
    return Policy(source, layers, calendars)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; a missing or unreadable file is a PolicyError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), "(file)", f"cannot be read: {exc.strerror}") from None
    return parse_policy(text, str(path))


def default_policy() -> Policy:
    """The contract's sample policy, shipped with the package."""
    text = resources.files("dunning.config").joinpath("default_policy.toml").read_text("utf-8")
    return parse_policy(text, "default_policy.toml")
