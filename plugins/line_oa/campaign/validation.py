"""Check a campaign file before launch and report every problem at once, grouped by tab.

Each :class:`Problem` names the file, the tab, the YAML path (``content.messages[0].text``, indexes
from 0), the line in the file and a sentence a marketer can act on. Nothing here raises for a user
mistake: a missing file, bytes that are not UTF-8, broken YAML, an unknown key, a message over LINE's
limits all come back as problems. YAML is read with a safe loader that refuses aliases, so a
"billion laughs" document cannot blow up, and files over 1 MB are refused before parsing.
"""

from __future__ import annotations

import pathlib
import re
import stat
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import TypeAdapter, ValidationError

from line_oa.campaign import personalization
from line_oa.campaign.model import (
    SLUG_PATTERN,
    Campaign,
    Content,
    DeliverySchedule,
    RecurringSchedule,
    ScheduledSchedule,
    TargetAudience,
    UtmTracking,
    tagging_problems,
    utm_parameters_of,
)
from line_oa.campaign.problems import (
    Problem,
    ProblemCollector,
    ValidationReport,
    describe_error,
    kind_of,
)
from line_oa.paths import default_sql_root

if TYPE_CHECKING:
    import os

    from line_oa.campaign.messages import Loc

MAX_FILE_BYTES = 1024 * 1024


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
    campaign, collector, _data = _parse_data(text, file)
    return campaign, collector


def _parse_data(text: str, file: str) -> tuple[Campaign | None, ProblemCollector, Any]:
    """Parse ``text``: the campaign (None with any problem), the problems, and the YAML data."""
    collector = ProblemCollector(file)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        collector.add((), f"campaign text is larger than 1 MB ({MAX_FILE_BYTES} bytes)")
        return None, collector, None
    data = load_yaml(text, collector)
    if collector.problems:
        return None, collector, data
    if data is None:
        collector.add((), "file is empty; a campaign needs id, name, workspace, status and its sections")
        return None, collector, None
    if not isinstance(data, dict):
        collector.add(
            (),
            "the top level must be a mapping of keys (id, name, workspace, status, target_audience, ...), "
            f"not {kind_of(data)}",
            line=1,
        )
        return None, collector, None
    campaign = None
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            for loc, message in describe_error(item):
                collector.add(loc, message)
    _check_id_matches_file(data, file, collector)
    _check_tagged_lengths(data, campaign, collector)
    if campaign is not None:
        for loc, message in personalization.static_problems(campaign.content):
            collector.add(loc, message)
    return (campaign if not collector.problems else None), collector, data


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
    campaign, collector, data = _parse_data(text, file)
    if campaign is not None:
        campaign._source_path = pathlib.Path(path)
    if isinstance(data, dict):
        # Every tab is checked in the same pass, also when another tab has problems.
        _check_message_count(data, collector)
        audience = _section(TargetAudience, data.get("target_audience"))
        if audience is not None:
            _check_segment_sql(audience, pathlib.Path(sql_root or default_sql_root()), collector)
        schedule = _section(TypeAdapter(DeliverySchedule), data.get("delivery_schedule"))
        if schedule is not None and data.get("status") != "draft":
            _check_schedule_in_future(schedule, now or datetime.now(UTC), collector)
    return ValidationReport(file, campaign, collector.sorted())


def _section(model: Any, value: Any) -> Any:
    """Return one section validated on its own (None when it has problems: those are reported already)."""
    try:
        return model.validate_python(value) if isinstance(model, TypeAdapter) else model.model_validate(value)
    except ValidationError:
        return None


def _check_message_count(data: dict[str, Any], collector: ProblemCollector) -> None:
    """LINE's 1-5 messages, also when a message has problems (the schema checks the count only after)."""
    content = data.get("content")
    messages = content.get("messages") if isinstance(content, dict) else None
    if isinstance(messages, list) and len(messages) > 5:
        collector.add(
            ("content", "messages"), f"{len(messages)} messages, LINE sends at most 5 in one request"
        )


_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _check_segment_sql(audience: TargetAudience, sql_root: pathlib.Path, collector: ProblemCollector) -> None:
    """Require the segment's SQL file, and every suppression list the campaign uses, to exist and to be
    one query returning the two id columns."""
    sql_path = pathlib.Path(sql_root) / "segments" / audience.parent_segment / f"{audience.segment}.sql"
    _check_query_file(
        sql_path, ("target_audience", "segment"), "segment SQL file", "fix parent_segment/segment", collector
    )
    folder = pathlib.Path(sql_root) / "suppressions"
    for path in sorted(folder.glob("*.sql")):
        _check_query_file(path, ("target_audience",), "suppression list", "fix or remove it", collector)
    for index, name in enumerate(audience.suppression_lists):
        loc = ("target_audience", "suppression_lists", index)
        _check_query_file(
            folder / "lists" / f"{name}.sql", loc, "suppression list", "fix the name", collector
        )


def _check_query_file(
    sql_path: pathlib.Path, loc: Loc, what: str, remedy: str, collector: ProblemCollector
) -> None:
    """Require ``sql_path`` to exist and hold one SELECT returning ``profile_id`` and ``line_user_id``."""
    shown = _display(sql_path)
    try:
        sql = sql_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        collector.add(loc, f"{what} {shown} not found; create it or {remedy}")
        return
    except (OSError, UnicodeDecodeError) as error:
        collector.add(loc, f"{what} {shown} cannot be read: {error}")
        return
    query = _SQL_COMMENT.sub(" ", sql).strip().rstrip(";").strip()
    first_word = query.split(None, 1)[0].lower() if query else ""
    if first_word not in ("select", "with"):
        collector.add(loc, f"{what} {shown} must hold one SELECT query (it may start with WITH)")
    elif ";" in query:
        collector.add(loc, f"{what} {shown} holds more than one statement; keep one SELECT query")
    for column in ("profile_id", "line_user_id"):
        if not re.search(rf"\b{column}\b", query, re.IGNORECASE):
            collector.add(
                loc, f"{what} {shown} does not return the column {column} (needed: profile_id, line_user_id)"
            )


def _check_schedule_in_future(schedule: Any, now: datetime, collector: ProblemCollector) -> None:
    """Refuse a launched campaign whose one-off send time, or recurring end, has already passed."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
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
