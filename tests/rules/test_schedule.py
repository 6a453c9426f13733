from dunning.rules.schedule import Schedule


def test_pops_due_ids_in_time_order_each_once():
    s = Schedule()
    s.set("b", 20)
    s.set("a", 10)
    s.set("c", 30)
    assert s.pop_due(25) == ["a", "b"]
    assert len(s) == 1 and "c" in s and "a" not in s
    assert s.pop_due(25) == []


def test_equal_times_pop_by_id():
    s = Schedule()
    for key in ("z", "m", "a"):
        s.set(key, 5)
    assert s.pop_due(5) == ["a", "m", "z"]


def test_rescheduling_moves_an_id_and_leaves_no_ghost():
    s = Schedule()
    s.set("a", 10)
    s.set("a", 50)
    assert s.pop_due(10) == []
    assert s.at("a") == 50
    s.set("a", 5)
    assert s.next_time() == 5
    assert s.pop_due(60) == ["a"]
    assert s.next_time() is None


def test_unscheduling_with_none():
    s = Schedule()
    s.set("a", 10)
    s.set("a", None)
    assert s.pop_due(100) == [] and len(s) == 0


def test_stale_entries_are_compacted():
    s = Schedule()
    for n in range(20_000):
        s.set("a", n + 1)
    assert s.entries() < 5000  # rescheduling one id does not grow the schedule without bound
    assert s.pop_due(100_000) == ["a"]


def test_rescheduling_back_to_an_old_time_yields_the_id_once():
    s = Schedule()
    s.set("a", 10)
    s.set("a", 20)
    s.set("a", 10)
    assert s.pop_due(30) == ["a"]


def test_pop_cost_follows_what_is_due_not_what_is_open():
    s = Schedule()
    for n in range(100_000):
        s.set(f"later-{n}", 1_000 + n)
    s.set("now", 1)
    entries_before = s.entries()
    assert s.pop_due(1) == ["now"]
    assert s.entries() == entries_before - 1  # one bucket taken; the rest untouched
