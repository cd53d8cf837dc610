from nestplast.wording import counted


def test_counted_puts_the_noun_in_its_number():
    assert counted(1, "rule") == "1 rule"
    assert [counted(n, "fresh trial") for n in (0, 2)] == ["0 fresh trials", "2 fresh trials"]
    assert counted(1, "rank stays", "ranks stay") == "1 rank stays"
    assert counted(3, "rank stays", "ranks stay") == "3 ranks stay"
