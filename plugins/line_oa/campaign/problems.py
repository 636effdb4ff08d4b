"""Campaign-file problems: what each one says (file, tab, YAML path, line, a sentence to act on).

``describe_error`` turns pydantic's errors into the sentences a marketer reads; ``ProblemCollector``
gathers them in file order; ``ValidationReport`` is what ``validate`` prints.
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from line_oa.campaign.model import SECTIONS, SLUG_PATTERN, Campaign

if TYPE_CHECKING:
    from line_oa.campaign.messages import Loc

TABS = ("campaign", *SECTIONS)


@dataclass(frozen=True)
class Problem:
    """One thing to fix in a campaign file."""

    file: str
    tab: str
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        subject = f"{self.path}: " if self.path else ""
        return f"{where}: [{self.tab}] {subject}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict."""
        return asdict(self)


@dataclass
class ValidationReport:
    """The outcome of checking one campaign file: the campaign when it parsed, and every problem."""

    file: str
    campaign: Campaign | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether the file has no problem at all."""
        return not self.problems

    def by_tab(self) -> dict[str, list[Problem]]:
        """Return the problems grouped by tab, tabs in product order, only tabs with problems."""
        groups: dict[str, list[Problem]] = {}
        for tab in TABS:
            found = [problem for problem in self.problems if problem.tab == tab]
            if found:
                groups[tab] = found
        return groups

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        campaign = self.campaign
        return {
            "file": self.file,
            "ok": self.ok,
            "campaign": None
            if campaign is None
            else {
                "id": campaign.id,
                "name": campaign.name,
                "status": campaign.status,
                "dag_id": campaign.dag_id,
            },
            "problems": [problem.to_dict() for problem in self.problems],
            "by_tab": {tab: [p.to_dict() for p in found] for tab, found in self.by_tab().items()},
        }


class ProblemCollector:
    """Turn paths into :class:`Problem` objects with the tab and the YAML line filled in."""

    def __init__(self, file: str, lines: dict[Loc, int] | None = None):
        self.file = file
        self.lines = lines or {}
        self.problems: list[Problem] = []

    def add(self, loc: Loc, message: str, *, line: int | None = None) -> None:
        """Record ``message`` about the value at ``loc``."""
        tab = loc[0] if loc and loc[0] in SECTIONS else "campaign"
        found = line if line is not None else self.line_of(loc)
        problem = Problem(self.file, str(tab), format_path(loc), found, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def line_of(self, loc: Loc) -> int | None:
        """Return the line of ``loc``, or of its nearest parent found in the file."""
        best, prefix = None, ()
        for element in loc:
            candidate = (*prefix, element)
            if candidate not in self.lines:
                candidate = (*prefix, str(element))
            if candidate not in self.lines:
                break
            prefix, best = candidate, self.lines[candidate]
        return best

    def sorted(self) -> list[Problem]:
        """Return the problems in tab order, then by line."""
        return sorted(self.problems, key=lambda p: (TABS.index(p.tab), p.line or 0, p.path))


def format_path(loc: Loc) -> str:
    """Format ``("content", "messages", 0, "text")`` as ``content.messages[0].text``."""
    text = ""
    for element in loc:
        text += f"[{element}]" if isinstance(element, int) else (f".{element}" if text else str(element))
    return text


_MISSING = {
    "content": "missing: a campaign needs a content section with line_config and 1 to 5 messages",
    "content.line_config": "no LINE sender account selected: set line_config to the Airflow connection id "
    "of the LINE Official Account to send from",
    "content.messages": "no messages; a campaign needs at least one message (LINE sends 1 to 5)",
    "target_audience": "missing: a campaign needs a target_audience section with parent_segment and segment",
    "target_audience.segment": "no segment specified: set segment to the name of a SQL file under "
    "include/sql/segments/<parent_segment>/",
    "delivery_schedule": "missing: say when to send (type: immediate, scheduled or recurring)",
    "delivery_schedule.send_at": "a scheduled campaign needs send_at, e.g. 2027-03-20T10:00:00+09:00",
    "delivery_schedule.cron": "a recurring campaign needs cron, e.g. '0 9 * * 1'",
}
_KINDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "datetime_type": "a date and time with a timezone, e.g. 2027-03-20T10:00:00+09:00",
    "datetime_parsing": "a date and time with a timezone, e.g. 2027-03-20T10:00:00+09:00",
    "datetime_from_date_parsing": "a date and time with a timezone, e.g. 2027-03-20T10:00:00+09:00",
}
_SLUG_RULE = (
    "use lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters"
)


def describe_error(error: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Turn one pydantic error into ``(path, sentence)`` pairs, with union tags removed from the path."""
    loc, parent, tags = _resolve(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "line_rules":
        return [((*loc, *sub), message) for sub, message in ctx["problems"]]
    return [(loc, _sentence(kind, ctx, value, loc, parent, tags, error["msg"]))]


_PYDANTIC_PHRASES = (
    ("Input should be ", "must be "),
    ("String should have ", "must have "),
    ("Value error, ", ""),
)


def _sentence(
    kind: str,
    ctx: dict[str, Any],
    value: Any,
    loc: Loc,
    parent: type[BaseModel] | None,
    tags: tuple[str, ...],
    default: str,
) -> str:
    """Write the sentence a marketer reads for one pydantic error."""
    generic = re.sub(r"\[\d+\]", "", format_path(loc))
    if kind == "line_rule":
        return default
    if kind == "missing" or (kind == "string_pattern_mismatch" and value == "" and generic in _MISSING):
        return _MISSING.get(generic, "required, but missing")
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), sorted(parent.model_fields) if parent else [])
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        expected = " or ".join(tags) or str(ctx.get("expected_tags"))
        if kind == "union_tag_not_found":
            return f"'type' is missing; use {expected}"
        return f"type '{ctx.get('tag')}' is not supported here; use {expected}"
    if kind == "timezone_aware":
        return "has no timezone; write the offset, e.g. 2027-03-20T10:00:00+09:00"
    if kind == "string_pattern_mismatch":
        rule = (
            _SLUG_RULE
            if ctx.get("pattern") == SLUG_PATTERN
            else "an Airflow connection id uses letters, digits, '_', '.' and '-'"
        )
        return f"{kind_of(value)} is not allowed; {rule}"
    if kind in _KINDS:
        hint = ""
        if kind == "string_type" and isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off as true/false: put the value in quotes)"
        elif kind == "string_type" and isinstance(value, int | float):
            hint = " (put the value in quotes)"
        return f"expected {_KINDS[kind]}, got {kind_of(value)}{hint}"
    if kind == "literal_error":
        hint = " (YAML reads yes/no/on/off as true/false)" if isinstance(value, bool) else ""
        return f"{kind_of(value)} is not allowed; use {ctx.get('expected')}{hint}"
    for phrase, replacement in _PYDANTIC_PHRASES:
        if default.startswith(phrase):
            return f"{replacement}{default[len(phrase) :]}, got {kind_of(value)}"
    return f"{default}, got {kind_of(value)}"


def _unknown_key(key: str, allowed: list[str]) -> str:
    """Explain an unknown key, suggesting the key the user probably meant."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    if snake != key and snake in allowed:
        return f"unknown key '{key}'; campaign files use snake_case: write '{snake}'"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}'; allowed here: {', '.join(allowed)}" if allowed else f"unknown key '{key}'"


def kind_of(value: Any) -> str:
    """Describe a YAML value in words: ``the text 'abc'``, ``the number 3``, ``a list``."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"the value {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the text {shown!r}"
    if isinstance(value, datetime):
        return f"the date and time {value.isoformat()}"
    return {list: "a list", dict: "a mapping"}.get(type(value), f"a {type(value).__name__} value")


def _resolve(loc: tuple[Any, ...]) -> tuple[Loc, type[BaseModel] | None, tuple[str, ...]]:
    """Walk the schema along pydantic's ``loc``: drop union tags, find the model holding the last key."""
    annotation: Any = Campaign
    clean: list[Any] = []
    parent: type[BaseModel] | None = None
    for element in loc:
        annotation = _unwrap(annotation)
        tags = _union_tags(annotation)
        if tags and element in tags:
            annotation = tags[element]
            continue
        clean.append(element)
        parent = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if parent is not None:
            found = parent.model_fields.get(element) if isinstance(element, str) else None
            annotation = found.annotation if found else None
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            annotation = None
    return tuple(clean), parent, tuple(_union_tags(_unwrap(annotation)))


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``| None`` from a type."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation):
            members = [member for member in get_args(annotation) if member is not type(None)]
            annotation = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        else:
            return annotation


def _union_tags(annotation: Any) -> dict[str, type[BaseModel]]:
    """Return ``{type tag: model}`` when ``annotation`` is a union of models told apart by ``type``."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return {}
    tags: dict[str, type[BaseModel]] = {}
    for member in get_args(annotation):
        field_info = getattr(member, "model_fields", {}).get("type")
        if field_info is None:
            return {}
        for tag in get_args(field_info.annotation):
            tags[tag] = member
    return tags
