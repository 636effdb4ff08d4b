"""Check a campaign file before launch and report every problem at once, grouped by tab.

Each :class:`Problem` names the file, the tab, the YAML path (``content.messages[0].text``, indexes
from 0), the line in the file and a sentence a marketer can act on. Nothing here raises for a user
mistake: a missing file, bytes that are not UTF-8, broken YAML, an unknown key, a message over LINE's
limits all come back as problems. YAML is read with a safe loader that refuses aliases, so a
"billion laughs" document cannot blow up, and files over 1 MB are refused before parsing.
"""

from __future__ import annotations

import difflib
import pathlib
import re
import stat
import types
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from line_oa.campaign.model import (
    SECTIONS,
    SLUG_PATTERN,
    Campaign,
    Content,
    RecurringSchedule,
    ScheduledSchedule,
    UtmTracking,
    tagging_problems,
    utm_parameters_of,
)
from line_oa.paths import default_sql_root

if TYPE_CHECKING:
    import os

    from line_oa.campaign.messages import Loc

MAX_FILE_BYTES = 1024 * 1024
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


class _CampaignLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses aliases and turns bad timestamps into YAML errors."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*name) are not allowed in campaign files; write the value out",
                mark,
            )
        return super().compose_node(parent, index)

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date or time ({error})", node.start_mark
            ) from None


_CampaignLoader.add_constructor("tag:yaml.org,2002:timestamp", _CampaignLoader.construct_yaml_timestamp)


def load_yaml(text: str, collector: ProblemCollector) -> Any:
    """Parse ``text`` into Python data, filling ``collector.lines``; record syntax problems."""
    try:
        loader = _CampaignLoader(text)
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        collector.add((), f"contains the control character #x{error.character:04x}; remove it", line=line)
        return None
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.problem and error.context and error.context_mark and error.context_mark is not mark:
            message += f" ({error.context} that starts at line {error.context_mark.line + 1})"
        if "\t" in message or "'\\t'" in message:
            message += " (indent with spaces, not tabs)"
        collector.add((), f"YAML syntax error: {message}", line=mark.line + 1 if mark else None)
        return None
    except yaml.YAMLError as error:
        collector.add((), f"YAML syntax error: {error}")
        return None
    except RecursionError:
        collector.add((), "YAML is nested too deeply to be a campaign file")
        return None
    finally:
        loader.dispose()
    if node is not None:
        _index_lines(node, collector)
    return data


def _index_lines(root: yaml.Node, collector: ProblemCollector) -> None:
    """Record the line of every mapping key and sequence item; report keys written twice."""
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    collector.add(
                        (*loc, key),
                        f"written twice (lines {seen[key]} and {line}); YAML keeps only the last one",
                        line=line,
                    )
                seen[key] = line
                collector.lines[(*loc, key)] = line
                stack.append((value_node, (*loc, key)))
        elif isinstance(node, yaml.SequenceNode):
            for number, item in enumerate(node.value):
                collector.lines[(*loc, number)] = item.start_mark.line + 1
                stack.append((item, (*loc, number)))


def read_campaign_text(path: str | os.PathLike[str]) -> tuple[str | None, list[Problem]]:
    """Read the file at ``path`` as UTF-8 text; return ``(None, problems)`` when it cannot be read."""
    file = str(path)
    collector = ProblemCollector(file)
    target = pathlib.Path(path)
    try:
        if target.is_dir():
            collector.add((), "is a directory, not a campaign file")
            return None, collector.problems
        if not stat.S_ISREG(target.stat().st_mode):  # a pipe or a device would hang or never end
            collector.add((), "is not a regular file (a pipe, socket or device), not a campaign file")
            return None, collector.problems
        with target.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # never more, even if the file grows while read
        if len(raw) > MAX_FILE_BYTES:
            size = target.stat().st_size
            collector.add(
                (), f"file is {size} bytes; campaign files are limited to 1 MB ({MAX_FILE_BYTES} bytes)"
            )
            return None, collector.problems
    except FileNotFoundError:
        collector.add((), "file not found")
        return None, collector.problems
    except OSError as error:
        collector.add((), f"cannot read the file: {error.strerror or error}")
        return None, collector.problems
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        collector.add(
            (),
            f"is not UTF-8 text: byte 0x{raw[error.start]:02x} cannot be decoded; save the file as UTF-8",
            line=line,
        )
        return None, collector.problems


def campaign_from_text(text: str, file: str) -> tuple[Campaign | None, list[Problem]]:
    """Parse campaign YAML: return the campaign (or ``None``) and every syntax, schema and LINE problem."""
    campaign, collector = _parse(text, file)
    return campaign, collector.sorted()


def _parse(text: str, file: str) -> tuple[Campaign | None, ProblemCollector]:
    """Parse ``text``; the collector keeps the problems and the line table for later checks."""
    collector = ProblemCollector(file)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        collector.add((), f"campaign text is larger than 1 MB ({MAX_FILE_BYTES} bytes)")
        return None, collector
    data = load_yaml(text, collector)
    if collector.problems:
        return None, collector
    if data is None:
        collector.add((), "file is empty; a campaign needs id, name, workspace, status and its sections")
        return None, collector
    if not isinstance(data, dict):
        collector.add(
            (),
            "the top level must be a mapping of keys (id, name, workspace, status, target_audience, ...), "
            f"not {_kind(data)}",
            line=1,
        )
        return None, collector
    campaign = None
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            for loc, message in describe_error(item):
                collector.add(loc, message)
    _check_id_matches_file(data, file, collector)
    _check_tagged_lengths(data, campaign, collector)
    return (campaign if not collector.problems else None), collector


def _check_id_matches_file(data: dict[str, Any], file: str, collector: ProblemCollector) -> None:
    """Require ``id`` to equal the file name without extension (it becomes part of the DAG id)."""
    campaign_id, stem = data.get("id"), pathlib.PurePath(file).stem
    if isinstance(campaign_id, str) and re.match(SLUG_PATTERN, campaign_id) and stem and campaign_id != stem:
        collector.add(
            ("id",),
            f"'{campaign_id}' must match the file name '{stem}' (rename the file to {campaign_id}.yaml)",
        )


def _check_tagged_lengths(
    data: dict[str, Any], campaign: Campaign | None, collector: ProblemCollector
) -> None:
    """Check LINE's limits again after UTM tagging, even when other sections have problems."""
    if campaign is not None:
        content, tracking, campaign_id, name = (
            campaign.content,
            campaign.utm_tracking,
            campaign.id,
            campaign.name,
        )
    else:
        try:
            content = Content.model_validate(data.get("content"))
            tracking = UtmTracking.model_validate(data.get("utm_tracking") or {})
        except ValidationError:
            return
        campaign_id, name = str(data.get("id") or ""), str(data.get("name") or "")
    for loc, message in tagging_problems(content, utm_parameters_of(campaign_id, name, tracking)):
        collector.add(loc, message)


def validate_campaign_file(
    path: str | os.PathLike[str], *, now: datetime | None = None, sql_root: pathlib.Path | None = None
) -> ValidationReport:
    """Run every pre-launch check on the campaign file at ``path`` and report all problems.

    :param now: the time "in the past" is measured against (default: the current time, UTC).
    :param sql_root: the folder holding ``segments/``; the Airflow integration and the CLI pass the
        ``[line_oa] sql_root`` setting (this layer reads no settings); default: the setting's own
        default, without the setting (``line_oa.paths.default_sql_root()``: a source checkout's
        ``include/sql``, else ``$AIRFLOW_HOME/line_oa/sql``).
    """
    file = str(path)
    text, problems = read_campaign_text(path)
    if text is None:
        return ValidationReport(file, None, problems)
    campaign, collector = _parse(text, file)
    if campaign is None:
        return ValidationReport(file, None, collector.sorted())
    campaign._source_path = pathlib.Path(path)
    _check_segment_sql(campaign, pathlib.Path(sql_root or default_sql_root()), collector)
    _check_schedule_in_future(campaign, now or datetime.now(UTC), collector)
    return ValidationReport(file, campaign, collector.sorted())


_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _check_segment_sql(campaign: Campaign, sql_root: pathlib.Path, collector: ProblemCollector) -> None:
    """Require the segment's SQL file to exist and to be one query returning the two id columns."""
    sql_path = campaign.segment_sql_path(sql_root)
    shown = _display(sql_path)
    loc = ("target_audience", "segment")
    try:
        sql = sql_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        collector.add(loc, f"segment SQL file {shown} not found; create it or fix parent_segment/segment")
        return
    except (OSError, UnicodeDecodeError) as error:
        collector.add(loc, f"segment SQL file {shown} cannot be read: {error}")
        return
    query = _SQL_COMMENT.sub(" ", sql).strip().rstrip(";").strip()
    first_word = query.split(None, 1)[0].lower() if query else ""
    if first_word not in ("select", "with"):
        collector.add(loc, f"segment SQL file {shown} must hold one SELECT query (it may start with WITH)")
    elif ";" in query:
        collector.add(loc, f"segment SQL file {shown} holds more than one statement; keep one SELECT query")
    for column in ("profile_id", "line_user_id"):
        if not re.search(rf"\b{column}\b", query, re.IGNORECASE):
            collector.add(
                loc,
                f"segment SQL file {shown} does not return the column {column} (needed: profile_id, line_user_id)",
            )


def _check_schedule_in_future(campaign: Campaign, now: datetime, collector: ProblemCollector) -> None:
    """Refuse a launched campaign whose one-off send time, or recurring end, has already passed."""
    if campaign.is_draft:
        return
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    schedule = campaign.delivery_schedule
    if isinstance(schedule, ScheduledSchedule) and schedule.send_at <= now:
        collector.add(
            ("delivery_schedule", "send_at"),
            f"{schedule.send_at.isoformat()} is in the past (now {now.isoformat(timespec='seconds')}); "
            "a launched campaign must be scheduled for a future time, or use type: immediate",
        )
    if isinstance(schedule, RecurringSchedule) and schedule.end_at and schedule.end_at <= now:
        collector.add(
            ("delivery_schedule", "end_at"),
            f"{schedule.end_at.isoformat()} is in the past; this recurring campaign would never send",
        )


def _display(path: pathlib.Path) -> str:
    """Show ``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(path)


# How schema errors read -------------------------------------------------------------------------

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
        return f"{_kind(value)} is not allowed; {rule}"
    if kind in _KINDS:
        hint = ""
        if kind == "string_type" and isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off as true/false: put the value in quotes)"
        elif kind == "string_type" and isinstance(value, int | float):
            hint = " (put the value in quotes)"
        return f"expected {_KINDS[kind]}, got {_kind(value)}{hint}"
    if kind == "literal_error":
        hint = " (YAML reads yes/no/on/off as true/false)" if isinstance(value, bool) else ""
        return f"{_kind(value)} is not allowed; use {ctx.get('expected')}{hint}"
    for phrase, replacement in _PYDANTIC_PHRASES:
        if default.startswith(phrase):
            return f"{replacement}{default[len(phrase) :]}, got {_kind(value)}"
    return f"{default}, got {_kind(value)}"


def _unknown_key(key: str, allowed: list[str]) -> str:
    """Explain an unknown key, suggesting the key the user probably meant."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    if snake != key and snake in allowed:
        return f"unknown key '{key}'; campaign files use snake_case: write '{snake}'"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}'; allowed here: {', '.join(allowed)}" if allowed else f"unknown key '{key}'"


def _kind(value: Any) -> str:
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
