"""Money: exact decimals in an ISO 4217 currency, never floats."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

# Minor-unit exponents that differ from 2 (ISO 4217).
_EXPONENTS = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
         "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
    "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR "
    "KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR "
    "MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK "
    "SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN "
    "UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)
EXPONENTS: dict[str, int] = {**dict.fromkeys(_TWO.split(), 2), **_EXPONENTS}
_QUANTA = {e: Decimal(1).scaleb(-e) for e in set(EXPONENTS.values())}
_AMOUNT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,8})?")  # ASCII: `\d` takes any Unicode digit
ZERO = Decimal(0)


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in EXPONENTS


def parse_amount(text: object, currency: str | None = None) -> Decimal:
    """A non-negative decimal string, with no more places than the currency has.

    Raises ValueError with a reason a person can read.
    """
    if not isinstance(text, str):
        raise ValueError("money must be a decimal string such as \"100.00\", not a number")
    if _AMOUNT.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a plain non-negative decimal such as \"100.00\"")
    value = Decimal(text)
    if currency is not None:
        places = -value.as_tuple().exponent  # type: ignore[operator]
        if places > EXPONENTS[currency]:
            raise ValueError(
                f"{text!r} has more decimal places than {currency} allows ({EXPONENTS[currency]})"
            )
    return value


def quantize(value: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half up (commercial rounding)."""
    return value.quantize(_QUANTA[EXPONENTS[currency]], rounding=ROUND_HALF_UP)


def fmt(value: Decimal, currency: str) -> str:
    """The wire form: a string with exactly the currency's places."""
    return str(quantize(value, currency))
