"""The policy file (contract §3): layer order, `false` as off, the late-fee stage, validation."""

from decimal import Decimal
from pathlib import Path

import pytest

from dunning.config.policy import PolicyError, Terms, default_policy, load_policy, parse_policy

# Each layer sets a different terms_days so the winner is visible.
LAYERED = """
[defaults]
terms_days = 30
suspend_after_days = 15
reminder_every_days = 10
late_fee = "5.00"

[class.business]
terms_days = 20
late_fee_percent = "1.5"

[class.business.out_of_turn]
terms_days = 6

[class.business.regular]
delete_after_days = 90

[product.domain_registration]
terms_days = 45
suspend_after_days = false
"""


@pytest.fixture
def layered():
    return parse_policy(LAYERED, "layered.toml")


# --- layer order ---------------------------------------------------------------------------

def test_defaults_only_for_an_invoice_without_class_or_product(layered):
    t = layered.terms()
    assert (t.terms_days, t.suspend_after_days, t.reminder_every_days) == (30, 15, 10)
    assert t.late_fee == Decimal("5.00") and t.late_fee_percent is None


def test_class_overrides_defaults(layered):
    t = layered.terms(customer_class="business")
    assert t.terms_days == 20 and t.suspend_after_days == 15


def test_class_kind_overrides_class(layered):
    assert layered.terms(customer_class="business", kind="out_of_turn").terms_days == 6


def test_class_kind_layer_applies_only_to_its_kind(layered):
    assert layered.terms(customer_class="business", kind="regular").delete_after_days == 90
    assert layered.terms(customer_class="business", kind="out_of_turn").delete_after_days is None


def test_product_overrides_class_and_kind(layered):
    t = layered.terms(customer_class="business", kind="out_of_turn", product="domain_registration")
    assert t.terms_days == 45


def test_unknown_class_or_product_adds_no_layer(layered):
    assert layered.terms(customer_class="nobody", product="nothing") == layered.terms()


def test_quoted_class_name_with_a_dot_is_its_own_class():
    p = parse_policy('[class."x.regular"]\nterms_days = 1\n')
    assert p.terms(customer_class="x").terms_days == 30
    assert p.terms(customer_class="x.regular").terms_days == 1


def test_keys_absent_everywhere_take_the_terms_defaults():
    assert parse_policy("").terms() == Terms()


def test_terms_defaults_are_stages_off():
    t = Terms()
    assert (t.terms_days, t.auto_charge, t.collection_threshold) == (30, "off", Decimal("0.00"))
    assert t.reminder_every_days is None and t.suspend_after_days is None
    assert t.late_fee is None and t.late_fee_percent is None and t.late_fee_after_days == 0
    assert t.due_soon_days == () and t.charge_retry_days == () and t.notify_reseller is False


# --- debit notes ---------------------------------------------------------------------------

def test_debit_notes_remind_every_5_days_by_default():
    assert parse_policy("").terms("debit_note").reminder_every_days == 5


def test_debit_note_section_overrides_the_built_in_5_days():
    p = parse_policy("[debit_note]\nreminder_every_days = 3\n")
    assert p.terms("debit_note").reminder_every_days == 3


def test_debit_note_section_can_turn_reminders_off():
    p = parse_policy("[debit_note]\nreminder_every_days = false\n")
    assert p.terms("debit_note").reminder_every_days is None


def test_defaults_reminders_do_not_reach_debit_notes():
    p = parse_policy("[defaults]\nreminder_every_days = 10\n")
    assert p.terms("debit_note").reminder_every_days == 5
    assert p.terms().reminder_every_days == 10


def test_debit_notes_ignore_class_kind_and_product_layers(layered):
    t = layered.terms("debit_note", customer_class="business", kind="out_of_turn",
                      product="domain_registration")
    assert t.terms_days == 30 and t.suspend_after_days == 15


# --- false turns a stage off ---------------------------------------------------------------

def test_false_at_product_turns_off_a_stage_set_in_defaults(layered):
    assert layered.terms(product="domain_registration").suspend_after_days is None


def test_false_at_class_kind_turns_off_a_stage_set_in_class():
    p = parse_policy("[class.b]\nlimit_after_days = 4\n[class.b.out_of_turn]\n"
                     "limit_after_days = false\n")
    assert p.terms(customer_class="b").limit_after_days == 4
    assert p.terms(customer_class="b", kind="out_of_turn").limit_after_days is None


def test_false_turns_list_stages_off_as_empty_tuples():
    t = parse_policy("[defaults]\ndue_soon_days = false\ncharge_retry_days = false\n").terms()
    assert t.due_soon_days == () and t.charge_retry_days == ()


def test_false_auto_charge_means_off():
    p = parse_policy('[defaults]\nauto_charge = "on_due"\n[class.b]\nauto_charge = false\n')
    assert p.terms().auto_charge == "on_due"
    assert p.terms(customer_class="b").auto_charge == "off"


# --- late fee: fixed or percent, one stage -------------------------------------------------

def test_percent_in_a_more_specific_layer_clears_an_inherited_fixed_fee(layered):
    t = layered.terms(customer_class="business")
    assert t.late_fee is None and t.late_fee_percent == Decimal("1.5")


def test_fixed_fee_in_a_more_specific_layer_clears_an_inherited_percent():
    p = parse_policy(LAYERED + '\n[product.x]\nlate_fee = "2.00"\n')
    t = p.terms(customer_class="business", product="x")
    assert t.late_fee == Decimal("2.00") and t.late_fee_percent is None


def test_late_fee_false_in_a_more_specific_layer_turns_off_an_inherited_percent():
    p = parse_policy(LAYERED + "\n[product.x]\nlate_fee = false\n")
    t = p.terms(customer_class="business", product="x")
    assert t.late_fee is None and t.late_fee_percent is None


def test_one_fee_set_and_the_other_false_in_one_section_is_allowed():
    t = parse_policy('[defaults]\nlate_fee = "5.00"\nlate_fee_percent = false\n').terms()
    assert t.late_fee == Decimal("5.00") and t.late_fee_percent is None


# --- the shipped default policy ------------------------------------------------------------

def test_default_policy_defaults_are_the_contract_sample():
    t = default_policy().terms()
    assert t.terms_days == 30 and t.auto_charge == "off"
    assert t.charge_retry_days == (3, 5, 7) and t.due_soon_days == (3,)
    assert t.reminder_every_days is None and t.collection_threshold == Decimal("0.00")
    assert t.late_fee is None and t.late_fee_percent is None and t.late_fee_after_days == 0
    assert t.limit_after_days is None
    assert (t.suspend_after_days, t.delete_after_days, t.request_cancel_after_days) == (15, 60, 9)
    assert t.notify_reseller is True


def test_default_policy_debit_notes_remind_every_5_days():
    assert default_policy().terms("debit_note").reminder_every_days == 5


def test_default_policy_business_out_of_turn_terms_are_6_days():
    p = default_policy()
    assert p.terms(customer_class="business", kind="out_of_turn").terms_days == 6
    assert p.terms(customer_class="business", kind="regular").terms_days == 30


def test_default_policy_domain_registration_is_never_suspended_or_deleted():
    t = default_policy().terms(product="domain_registration")
    assert t.suspend_after_days is None and t.delete_after_days is None
    assert t.request_cancel_after_days == 9


# --- caching and files ---------------------------------------------------------------------

def test_terms_are_cached_as_the_identical_object(layered):
    first = layered.terms("invoice", "business", "out_of_turn", "domain_registration")
    assert layered.terms("invoice", "business", "out_of_turn", "domain_registration") is first


def test_load_policy_reads_a_file(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text("[defaults]\nterms_days = 14\n")
    policy = load_policy(path)
    assert policy.terms().terms_days == 14 and policy.source == str(path)


def test_missing_file_is_a_policy_error(tmp_path: Path):
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path / "nope.toml")
    assert err.value.key == "(file)" and "cannot be read" in err.value.reason


# --- validation: each failure names [section] key and why ----------------------------------

INVALID = {
    "toml_syntax": ("[defaults]\nterms_days = [", "(file)", "not valid TOML"),
    "unknown_section": ("[clas.x]\nterms_days = 3", "[clas]", "unknown section"),
    "key_outside_sections": ("terms_days = 3", "terms_days", "outside any section"),
    "unknown_key": ("[defaults]\nterm_days = 30", "[defaults] term_days", "unknown key"),
    "unknown_key_in_class_kind": ("[class.business.out_of_turn]\nbogus = 3",
                                  "[class.business.out_of_turn] bogus", "unknown key"),
    "unknown_class_sub_table": ("[class.business.vip]\nterms_days = 3", "[class.business.vip]",
                                "regular and out_of_turn"),
    "class_kind_not_a_table": ("[class.business]\nout_of_turn = 3",
                               "[class.business.out_of_turn]", "must be a table"),
    "class_not_a_table": ("[class]\nbusiness = 3", "[class.business]", "must be a table"),
    "product_not_a_table": ("[product]\nx = 3", "[product.x]", "must be a table"),
    "defaults_not_a_table": ("defaults = 3", "[defaults]", "must be a table"),
    "days_negative": ("[defaults]\nterms_days = -1", "[defaults] terms_days", "at least 0"),
    "stage_days_negative": ("[defaults]\nsuspend_after_days = -5",
                            "[defaults] suspend_after_days", "at least 0"),
    "days_true": ("[defaults]\nterms_days = true", "[defaults] terms_days", "whole number"),
    "days_float": ("[defaults]\nterms_days = 1.5", "[defaults] terms_days", "whole number"),
    "days_string": ('[defaults]\nlimit_after_days = "3"', "[defaults] limit_after_days",
                    "whole number"),
    "terms_days_false": ("[defaults]\nterms_days = false", "[defaults] terms_days",
                         "cannot be turned off"),
    "late_fee_after_days_false": ("[defaults]\nlate_fee_after_days = false",
                                  "[defaults] late_fee_after_days", "cannot be turned off"),
    "threshold_false": ("[defaults]\ncollection_threshold = false",
                        "[defaults] collection_threshold", "cannot be turned off"),
    "reminder_zero": ("[defaults]\nreminder_every_days = 0", "[defaults] reminder_every_days",
                      "at least 1"),
    "due_soon_not_a_list": ("[defaults]\ndue_soon_days = 3", "[defaults] due_soon_days", "list"),
    "due_soon_negative": ("[defaults]\ndue_soon_days = [3, -1]", "[defaults] due_soon_days",
                          "at least 1"),
    # v1.1: a due-soon notice fires only before due_at, so 0 days (at due_at) never could.
    "due_soon_zero": ("[defaults]\ndue_soon_days = [3, 0]", "[defaults] due_soon_days",
                      "before due"),
    "due_soon_repeated": ("[defaults]\ndue_soon_days = [7, 3, 7]", "[defaults] due_soon_days",
                          "7 twice"),
    "late_fee_table_unknown_currency": ('[defaults]\nlate_fee = { USD = "5.00", XYZ = "5" }',
                                        "[defaults] late_fee.XYZ", "ISO 4217"),
    "late_fee_table_too_many_places": ('[defaults]\nlate_fee = { JPY = "5.5" }',
                                       "[defaults] late_fee.JPY", "more decimal places"),
    "late_fee_table_number": ("[defaults]\nlate_fee = { USD = 5 }", "[defaults] late_fee.USD",
                              "money must be a string"),
    "late_fee_table_zero": ('[defaults]\nlate_fee = { USD = "0.00" }',
                            "[defaults] late_fee.USD", "greater than zero"),
    "threshold_table_negative": ('[class.b]\ncollection_threshold = { EUR = "-1.00" }',
                                 "[class.b] collection_threshold.EUR", "non-negative decimal"),
    "due_soon_entry_true": ("[defaults]\ndue_soon_days = [true]", "[defaults] due_soon_days",
                            "whole number"),
    "charge_retry_zero": ("[defaults]\ncharge_retry_days = [3, 0]",
                          "[defaults] charge_retry_days", "at least 1"),
    "late_fee_float": ("[defaults]\nlate_fee = 5.0", "[defaults] late_fee",
                       "money must be a string"),
    "late_fee_int": ("[defaults]\nlate_fee = 5", "[defaults] late_fee", "money must be a string"),
    "late_fee_zero": ('[defaults]\nlate_fee = "0.00"', "[defaults] late_fee", "greater than zero"),
    "late_fee_negative": ('[defaults]\nlate_fee = "-1"', "[defaults] late_fee",
                          "non-negative decimal"),
    "late_fee_not_a_number": ('[defaults]\nlate_fee = "five"', "[defaults] late_fee",
                              "not a plain non-negative decimal"),
    "threshold_float": ("[defaults]\ncollection_threshold = 0.5",
                        "[defaults] collection_threshold", "money must be a string"),
    "threshold_negative": ('[defaults]\ncollection_threshold = "-0.01"',
                           "[defaults] collection_threshold", "non-negative decimal"),
    "percent_float": ("[defaults]\nlate_fee_percent = 1.5", "[defaults] late_fee_percent",
                      "must be a string"),
    "percent_zero": ('[defaults]\nlate_fee_percent = "0"', "[defaults] late_fee_percent",
                     "more than 0"),
    "percent_over_100": ('[defaults]\nlate_fee_percent = "150"', "[defaults] late_fee_percent",
                         "at most 100"),
    "auto_charge_unknown": ('[defaults]\nauto_charge = "weekly"', "[defaults] auto_charge",
                            "on_issue"),
    "auto_charge_true": ("[defaults]\nauto_charge = true", "[defaults] auto_charge", "on_due"),
    "notify_reseller_string": ('[defaults]\nnotify_reseller = "yes"',
                               "[defaults] notify_reseller", "true or false"),
    "both_fees_in_one_section": ('[class.b.regular]\nlate_fee = "5.00"\nlate_fee_percent = "1"',
                                 "[class.b.regular] late_fee", "both set"),
    "debit_note_other_key": ("[debit_note]\nsuspend_after_days = 3",
                             "[debit_note] suspend_after_days", "reminder days only"),
    "debit_note_late_fee": ('[debit_note]\nlate_fee = "5.00"', "[debit_note] late_fee",
                            "reminder days only"),
}


# Contract §2 "Validation at the edge": day counts lie within 0 to 3 650 days.
DAY_KEYS = ("terms_days", "late_fee_after_days", "limit_after_days", "suspend_after_days",
            "delete_after_days", "request_cancel_after_days", "reminder_every_days")
for _key in DAY_KEYS:
    INVALID[f"{_key}_over_3650"] = (f"[defaults]\n{_key} = 3651", f"[defaults] {_key}",
                                    "at most 3650")
for _key in ("due_soon_days", "charge_retry_days"):
    INVALID[f"{_key}_entry_over_3650"] = (f"[class.x.regular]\n{_key} = [3, 3651]",
                                          f"[class.x.regular] {_key}", "at most 3650")
INVALID["debit_note_reminder_over_3650"] = ("[debit_note]\nreminder_every_days = 4000",
                                            "[debit_note] reminder_every_days", "at most 3650")


@pytest.mark.parametrize(("text", "key", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid_policy_names_key_and_reason(text, key, reason):
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "bad.toml")
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(err.value).startswith(f"bad.toml: {key}: ")


def test_invalid_policy_file_names_its_path(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("[defaults]\nterms_days = -1\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert err.value.source == str(path) and err.value.key == "[defaults] terms_days"


def test_day_counts_of_3650_are_accepted():
    text = "[defaults]\n" + "".join(f"{k} = 3650\n" for k in DAY_KEYS) + (
        "due_soon_days = [3650]\ncharge_retry_days = [3650]\n")
    t = parse_policy(text).terms()
    assert t.terms_days == t.suspend_after_days == 3650 and t.due_soon_days == (3650,)


def test_repeated_retry_days_are_intervals_and_allowed():
    assert parse_policy("[defaults]\ncharge_retry_days = [3, 3, 3]\n").terms(
    ).charge_retry_days == (3, 3, 3)


# --- amounts by currency (contract §3) --------------------------------------------------------


def test_a_late_fee_table_gives_each_listed_currency_its_amount_and_others_none():
    t = parse_policy('[defaults]\nlate_fee = { USD = "5.00", JPY = "500", BHD = "1.5" }\n'
                     ).terms()
    assert t.late_fee_in("USD") == Decimal("5.00")
    assert t.late_fee_in("JPY") == Decimal("500")
    assert str(t.late_fee_in("BHD")) == "1.500"  # kept in the currency's places
    assert t.late_fee_in("EUR") is None


def test_a_plain_late_fee_applies_to_every_currency_rounded_half_up():
    t = parse_policy('[defaults]\nlate_fee = "2.505"\n').terms()
    assert [str(t.late_fee_in(c)) for c in ("USD", "JPY", "BHD")] == ["2.51", "3", "2.505"]


def test_no_late_fee_is_none_in_every_currency():
    assert parse_policy("").terms().late_fee_in("USD") is None


def test_a_threshold_table_gives_no_threshold_to_a_currency_not_listed():
    t = parse_policy('[defaults]\ncollection_threshold = { USD = "10.00", JPY = "1000" }\n'
                     ).terms()
    assert (t.threshold_in("USD"), t.threshold_in("JPY")) == (Decimal("10.00"), Decimal(1000))
    assert str(t.threshold_in("EUR")) == "0.00" and str(t.threshold_in("JPY")) == "1000"


def test_a_plain_threshold_is_rounded_to_each_currency():
    t = parse_policy('[defaults]\ncollection_threshold = "9.5"\n').terms()
    assert [str(t.threshold_in(c)) for c in ("USD", "JPY", "BHD")] == ["9.50", "10", "9.500"]


def test_a_more_specific_table_replaces_the_whole_inherited_table():
    p = parse_policy('[defaults]\nlate_fee = { USD = "5.00", EUR = "5.00" }\n'
                     '[product.x]\nlate_fee = { JPY = "500" }\n')
    t = p.terms(product="x")
    assert (t.late_fee_in("USD"), t.late_fee_in("JPY")) == (None, Decimal(500))


def test_a_fee_table_in_a_more_specific_layer_clears_an_inherited_percent():
    p = parse_policy('[defaults]\nlate_fee_percent = "1.5"\n'
                     '[product.x]\nlate_fee = { USD = "5.00" }\n')
    t = p.terms(product="x")
    assert t.late_fee_percent is None and t.late_fee_in("USD") == Decimal("5.00")


def test_a_fee_table_and_a_percent_in_one_section_are_both_set():
    with pytest.raises(PolicyError, match="both set"):
        parse_policy('[defaults]\nlate_fee = { USD = "5.00" }\nlate_fee_percent = "1"\n')
