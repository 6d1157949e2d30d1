"""The usage page's pure parts: the bars of its chart, the dates of its form, and how costs
and counts are written."""

from __future__ import annotations

import calendar

import pytest

from taskgate.errors import BadRequest
from taskgate.web.render import _money, _number
from taskgate.web.usage import CHART_BARS, CHART_W, LABEL_W, bars, moment


def row(group: str, cost: float, tasks: int = 1) -> dict[str, object]:
    return {"group": group, "cost": cost, "tasks": tasks, "tokens": 10 * tasks}


def test_bars_are_scaled_to_the_largest_and_drawn_largest_first() -> None:
    chart = bars([row("acme", 0.5), row("beta", 2.0), row("zeta", 0.0)], "cost")
    drawn = chart["bars"]
    assert [b.label for b in drawn] == ["beta", "acme", "zeta"]
    room = CHART_W - LABEL_W - 90
    assert [b.width for b in drawn] == [room, room / 4, 0.0]
    assert [b.y for b in drawn] == [0, 22, 44] and chart["height"] == 66
    assert chart["left_out"] == 0


def test_days_keep_their_order_and_only_the_latest_are_drawn() -> None:
    days = [row(f"2026-03-{d:02}", d) for d in range(1, 32)] * 2  # more days than bars
    chart = bars(days, "tasks", keep_order=True)
    assert len(chart["bars"]) == CHART_BARS and chart["left_out"] == 62 - CHART_BARS
    assert chart["bars"][-1].label == "2026-03-31"
    assert all(b.width == chart["bars"][0].width for b in chart["bars"])  # one task each


def test_nothing_to_draw_and_long_labels() -> None:
    assert bars([], "cost")["bars"] == []
    [bar] = bars([row("m" * 40, 0.0)], "cost")["bars"]
    assert bar.width == 0.0 and len(bar.short) == 28 and bar.short.endswith("…")


def test_the_forms_dates_are_utc_days_and_to_takes_its_whole_day() -> None:
    day = calendar.timegm((2026, 3, 14, 0, 0, 0))
    assert moment("2026-03-14", "from") == day
    assert moment("2026-03-14", "to", end_of_day=True) == day + 86_400
    assert moment("2026-03-14T06:00:00+02:00", "to", end_of_day=True) == day + 4 * 3600
    assert moment("", "from") is None
    with pytest.raises(BadRequest, match="'to' is not a date"):
        moment("yesterday", "to")


@pytest.mark.parametrize(
    ("value", "money", "number"),
    [
        (None, "-", "-"),
        (0.0, "0", "0"),
        (1234.5, "1,234.5", "1,234.5"),
        (0.000012, "0.000012", "0.000012"),
        (1e-9, "0", "0"),
        (2000000, "2,000,000", "2,000,000"),
    ],
)
def test_costs_and_counts_are_written_plainly(value: object, money: str, number: str) -> None:
    assert (_money(value), _number(value)) == (money, number)
