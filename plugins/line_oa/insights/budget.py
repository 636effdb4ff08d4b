"""LINE's monthly budget of aggregation units: will this campaign's unit still be counted this month?

LINE counts at most 1,000 distinct unit names per calendar month per channel; a request naming a
1,001st is sent all the same, but its unit is silently dropped, so its impressions and clicks are
never counted (``shared/reference/line-messaging-api.md`` §1.7).
"""

from __future__ import annotations

from typing import Any

UNIT_BUDGET = 1000
LIST_PAGE = 100


def units_used_this_month(hook: Any) -> list[str]:
    """Return every unit name the channel used this month (``GET .../aggregation/list``, paged)."""
    names: list[str] = []
    start = None
    while True:
        page = hook.get_aggregation_unit_names(limit=LIST_PAGE, start=start)
        names += page.get("customAggregationUnits") or []
        start = page.get("next")
        if not start:
            return names


def unit_budget_problem(hook: Any, unit: str, *, budget: int = UNIT_BUDGET) -> tuple[int, str | None]:
    """Return this month's unit count and why ``unit`` would not be counted (``None``: it will be).

    Only when the month's names have reached the budget is the list read, to see whether ``unit`` is
    one of them (then the campaign adds no new name).
    """
    used = hook.get_aggregation_unit_count()
    if used < budget or unit in units_used_this_month(hook):
        return used, None
    return used, (
        f"aggregation_unit: {unit!r} would be a new unit this month, but the channel has used {used} of "
        f"LINE's {budget} units a month; LINE would send the messages without counting their impressions "
        "and clicks. Set aggregation_unit to a unit already used this month, or launch next month."
    )
