from decimal import Decimal
from pathlib import Path

import pytest

from dunning.config.policy import PolicyError, Terms, default_policy, load_policy, parse_policy

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

[product.domain_registration]
suspend_after_days = false
"""


@pytest.fixture
def layered():
    return parse_policy(LAYERED, "layered.toml")


def test_defaults_only_for_an_invoice_without_class_or_product(layered):
    t = layered.terms()
    assert (t.terms_days, t.suspend_after_days, t.reminder_every_days) == (30, 15, 10)
    assert t.late_fee == Decimal("5.00") and t.late_fee_percent is None


def test_class_overrides_defaults(layered):
    assert layered.terms(customer_class="business").terms_days == 20


def test_class_kind_overrides_class(layered):
    assert layered.terms(customer_class="business", kind="out_of_turn").terms_days == 6
    assert layered.terms(customer_class="business", kind="regular").terms_days == 20


def test_product_overrides_class_and_false_turns_a_stage_off(layered):
    t = layered.terms(customer_class="business", product="domain_registration")
    assert t.suspend_after_days is None
    assert t.terms_days == 20


def test_unknown_class_or_product_adds_no_layer(layered):
    assert layered.terms(customer_class="nobody", product="nothing") == layered.terms()


def test_late_fee_kinds_replace_each_other_across_layers(layered):
    t = layered.terms(customer_class="business")
    assert t.late_fee is None and t.late_fee_percent == Decimal("1.5")
    back = parse_policy(LAYERED + '\n[product.x]\nlate_fee = "2.00"\n').terms(
        customer_class="business", product="x")
    assert back.late_fee == Decimal("2.00") and back.late_fee_percent is None


def test_keys_absent_everywhere_take_the_off_defaults():
    assert parse_policy("").terms() == Terms()
    t = Terms()
    assert t.reminder_every_days is None and t.suspend_after_days is None
    assert t.due_soon_days == () and t.auto_charge == "off" and t.notify_reseller is False


def test_list_stages_turn_off_with_false():
    t = parse_policy("[defaults]\ndue_soon_days = false\ncharge_retry_days = false\n").terms()
    assert t.due_soon_days == () and t.charge_retry_days == ()


def test_debit_notes_remind_every_5_days_by_default():
    assert parse_policy("").terms("debit_note").reminder_every_days == 5


def test_defaults_reminders_do_not_reach_debit_notes():
    p = parse_policy("[defaults]\nreminder_every_days = 10\n")
    assert p.terms("debit_note").reminder_every_days == 5
    assert p.terms().reminder_every_days == 10


def test_debit_note_section_sets_their_reminders_and_ignores_classes():
    p = parse_policy(LAYERED + "\n[debit_note]\nreminder_every_days = 3\n")
    t = p.terms("debit_note", customer_class="business", kind="out_of_turn")
    assert t.reminder_every_days == 3 and t.terms_days == 30


def test_terms_are_cached(layered):
    assert layered.terms(customer_class="business") is layered.terms(customer_class="business")


def test_default_policy_is_the_contract_sample():
    p = default_policy()
    t = p.terms()
    assert t.terms_days == 30 and t.auto_charge == "off"
    assert t.charge_retry_days == (3, 5, 7) and t.due_soon_days == (3,)
    assert t.reminder_every_days is None and t.collection_threshold == Decimal("0.00")
    assert t.late_fee is None and t.late_fee_percent is None and t.limit_after_days is None
    assert (t.suspend_after_days, t.delete_after_days, t.request_cancel_after_days) == (15, 60, 9)
    assert t.notify_reseller is True
    assert p.terms("debit_note").reminder_every_days == 5
    assert p.terms(customer_class="business", kind="out_of_turn").terms_days == 6
    dom = p.terms(product="domain_registration")
    assert dom.suspend_after_days is None and dom.delete_after_days is None


def test_load_policy_reads_a_file(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text("[defaults]\nterms_days = 14\n")
    assert load_policy(path).terms().terms_days == 14


def test_missing_file_is_a_policy_error(tmp_path: Path):
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path / "nope.toml")
    assert err.value.key == "(file)" and "cannot be read" in err.value.reason


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[defaults]\nterms_days = [", "(file)", "not valid TOML"),
        ("[defaults]\nterm_days = 30", "[defaults] term_days", "unknown key"),
        ("[clas.x]\nterms_days = 3", "[clas]", "unknown section"),
        ("[defaults]\nterms_days = -1", "[defaults] terms_days", "at least 0"),
        ("[defaults]\nsuspend_after_days = -5", "[defaults] suspend_after_days", "at least 0"),
        ("[defaults]\nterms_days = true", "[defaults] terms_days", "whole number"),
        ("[defaults]\nterms_days = 1.5", "[defaults] terms_days", "whole number"),
        ("[defaults]\nterms_days = false", "[defaults] terms_days", "whole number"),
        ("[defaults]\nreminder_every_days = 0", "[defaults] reminder_every_days", "at least 1"),
        ("[defaults]\nlate_fee = 5.0", "[defaults] late_fee", "money must be a string"),
        ("[defaults]\nlate_fee = 5", "[defaults] late_fee", "money must be a string"),
        ("[defaults]\nlate_fee = \"0.00\"", "[defaults] late_fee", "greater than zero"),
        ("[defaults]\nlate_fee = \"-1\"", "[defaults] late_fee", "non-negative decimal"),
        ("[defaults]\ncollection_threshold = 0.5", "[defaults] collection_threshold",
         "money must be a string"),
        ("[defaults]\nlate_fee_percent = 1.5", "[defaults] late_fee_percent", "must be a string"),
        ("[defaults]\nlate_fee_percent = \"150\"", "[defaults] late_fee_percent", "at most 100"),
        ("[defaults]\nauto_charge = \"weekly\"", "[defaults] auto_charge", "on_issue"),
        ("[defaults]\ndue_soon_days = 3", "[defaults] due_soon_days", "list"),
        ("[defaults]\ncharge_retry_days = [3, -1]", "[defaults] charge_retry_days", "at least 1"),
        ("[defaults]\nnotify_reseller = \"yes\"", "[defaults] notify_reseller", "true or false"),
        ("[defaults]\nlate_fee = \"5.00\"\nlate_fee_percent = \"1\"", "[defaults] late_fee",
         "both set"),
        ("[class.business.vip]\nterms_days = 3", "[class.business.vip]", "regular and out_of_turn"),
        ("[class.business.out_of_turn]\nbogus = 3", "[class.business.out_of_turn] bogus",
         "unknown key"),
        ("[product]\nx = 3", "[product.x]", "must be a table"),
        ("[debit_note]\nsuspend_after_days = 3", "[debit_note] suspend_after_days",
         "reminder days only"),
    ],
)
def test_invalid_policy_names_key_and_reason(text, key, reason):
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "bad.toml")
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(err.value).startswith(f"bad.toml: {key}: ")
