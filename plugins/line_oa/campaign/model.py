"""The campaign file: one closed schema with a section per tab of the product.

``include/campaigns/<id>.yaml`` names the segment, the sender account, the messages, the schedule,
the retry policy and the UTM parameters of one campaign. This module holds the schema (pydantic,
``extra="forbid"`` everywhere) and the two entry points that read it, :func:`load_campaign` and
:func:`parse_campaign`. It imports nothing from Airflow and touches no network or database.
"""

from __future__ import annotations

import pathlib
import re
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from line_oa.campaign import quiet_hours, units, utm
from line_oa.campaign.messages import Loc, Message, rule_error, rule_errors

if TYPE_CHECKING:
    from datetime import datetime

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
CONN_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,250}$"
UTM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
SECTIONS = ("target_audience", "content", "delivery_schedule", "activation", "utm_tracking")

Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
ConnectionId = Annotated[str, Field(pattern=CONN_ID_PATTERN)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Section(BaseModel):
    """Base of every part of the campaign file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class FrequencyCap(Section):
    """At most ``max_deliveries`` real campaign deliveries per LINE user in a rolling window of
    ``window_hours``, counted over every campaign of the workspace or of the sender account."""

    max_deliveries: int = Field(ge=1, le=1000)
    window_hours: int = Field(ge=1, le=24 * 90)
    scope: Literal["workspace", "sender_account"] = "workspace"


class TargetAudience(Section):
    """Who receives the campaign: a segment whose SQL lives in ``include/sql/segments``."""

    parent_segment: Slug
    segment: Slug
    cdp_conn_id: ConnectionId = "line_oa_cdp"
    # extra suppression lists (include/sql/suppressions/lists/<name>.sql), beside the global ones
    suppression_lists: list[Slug] = Field(default_factory=list, max_length=20)
    # recipients who already had this many campaign deliveries in the window are left out
    frequency_cap: FrequencyCap | None = None


class Content(Section):
    """What is sent and from which LINE Official Account."""

    line_config: ConnectionId
    delivery_mode: Literal["push", "multicast", "auto"] = "auto"
    notification_disabled: bool = False
    messages: list[Message]

    @field_validator("messages")
    @classmethod
    def _one_to_five(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise rule_error("no messages; a campaign needs at least one message (LINE sends 1 to 5)")
        if len(value) > 5:
            raise rule_error(f"{len(value)} messages, LINE sends at most 5 in one request")
        return value


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise rule_error(f"'{name}' is not an IANA timezone name such as 'Asia/Tokyo' or 'UTC'") from None
    return name


def _check_time_of_day(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 21:00 as the sexagesimal number 1260
        raise rule_error(f"put the time in quotes: '{value // 60:02d}:{value % 60:02d}'")
    if isinstance(value, str):
        try:
            quiet_hours.parse_hh_mm(value)
        except ValueError as err:
            raise rule_error(str(err)) from None
    return value


class QuietHours(Section):
    """A daily window, on the local clock of ``timezone``, in which the campaign does not send."""

    start: str
    end: str
    timezone: str

    _times = field_validator("start", "end", mode="before")(_check_time_of_day)
    _timezone = field_validator("timezone")(_check_timezone)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise rule_errors([(("end",), f"{self.end} is the same as start: the window would be empty")])
        return self

    def end_after(self, now: datetime) -> datetime | None:
        """Return when the quiet hours around ``now`` end, or ``None`` when ``now`` is outside them."""
        return quiet_hours.quiet_hours_end(self.start, self.end, self.timezone, now)


class ScheduleSection(Section):
    """Base of every delivery schedule: the optional quiet hours apply to all of them."""

    quiet_hours: QuietHours | None = None


class ImmediateSchedule(ScheduleSection):
    """Send as soon as the campaign's DAG is triggered."""

    type: Literal["immediate"]


class ScheduledSchedule(ScheduleSection):
    """Send once at ``send_at`` (a date and time with a timezone offset)."""

    type: Literal["scheduled"]
    send_at: AwareDatetime


def _check_cron(expression: str) -> str:
    fields = expression.split()
    preset = len(fields) == 1 and expression.strip().startswith("@")
    try:
        valid = (preset or len(fields) == 5) and croniter.is_valid(expression)
    except Exception:  # croniter raises assorted errors on garbage; any of them means "not a cron"
        valid = False
    if not valid:
        raise rule_error(
            f"'{expression}' is not a valid cron expression; write five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1'"
        )
    return expression


class RecurringSchedule(ScheduleSection):
    """Send on every ``cron`` tick in ``timezone``, between ``start_at`` and ``end_at`` when given."""

    type: Literal["recurring"]
    cron: str
    timezone: str = "UTC"
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None

    _cron = field_validator("cron")(_check_cron)
    _timezone = field_validator("timezone")(_check_timezone)

    @model_validator(mode="after")
    def _end_after_start(self) -> RecurringSchedule:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise rule_errors([(("end_at",), f"{self.end_at.isoformat()} is not after start_at")])
        return self


DeliverySchedule = Annotated[
    ImmediateSchedule | ScheduledSchedule | RecurringSchedule, Field(discriminator="type")
]


class Retry(Section):
    """How a transient LINE error is retried: exponential backoff between the two bounds."""

    max_attempts: int = Field(8, ge=1, le=20)
    initial_backoff_seconds: FiniteFloat = Field(1.0, gt=0)
    max_backoff_seconds: FiniteFloat = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> Retry:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise rule_errors(
                [
                    (
                        ("max_backoff_seconds",),
                        f"{self.max_backoff_seconds:g} is less than initial_backoff_seconds "
                        f"({self.initial_backoff_seconds:g})",
                    )
                ]
            )
        return self


class Activation(Section):
    """How delivery runs: retries, an optional rate cap below LINE's limit, chunk size."""

    retry: Retry = Field(default_factory=Retry)
    rate_limit_per_second: FiniteFloat | None = Field(None, gt=0, le=2000)
    chunk_size: int = Field(5000, ge=100, le=50000)


class UtmTracking(Section):
    """UTM parameters added to every web link of the messages."""

    enabled: bool = True
    parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _names_and_placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        problems: list[tuple[Loc, str]] = []
        for name, text in value.items():
            if not UTM_NAME.match(name):
                problems.append(
                    ((name,), "is not a usable parameter name; use letters, digits, '_', '.' or '-'")
                )
            for placeholder in utm.unknown_placeholders(text):
                problems.append(
                    (
                        (name,),
                        f"unknown placeholder {placeholder}; use {{{{campaign.id}}}} or {{{{campaign.name}}}}",
                    )
                )
        if problems:
            raise rule_errors(problems)
        return value


class Campaign(Section):
    """One campaign file. ``source_path`` is the file it was read from (``None`` when parsed from text)."""

    id: Slug
    name: str = Field(min_length=1, max_length=200)
    workspace: Slug
    status: Literal["draft", "launched"]
    owner: str = Field("marketing", min_length=1, max_length=200)
    description: str | None = None
    target_audience: TargetAudience
    content: Content
    delivery_schedule: DeliverySchedule
    activation: Activation = Field(default_factory=Activation)
    utm_tracking: UtmTracking = Field(default_factory=UtmTracking)
    aggregation_unit: str | None = None

    _source_path: pathlib.Path | None = PrivateAttr(default=None)

    @field_validator("aggregation_unit")
    @classmethod
    def _aggregation_unit_rule(cls, value: str | None) -> str | None:
        problem = None if value is None else units.unit_problem(value)
        if problem:
            raise rule_error(problem)
        return value

    @property
    def insight_unit(self) -> str:
        """Return the unit LINE counts this campaign's impressions and clicks under."""
        return self.aggregation_unit or units.unit_for_campaign(self.id)

    @property
    def source_path(self) -> pathlib.Path | None:
        """Return the file this campaign was loaded from."""
        return self._source_path

    @property
    def dag_id(self) -> str:
        """Return the id of the DAG that delivers this campaign."""
        return f"line_campaign__{self.id}"

    @property
    def is_draft(self) -> bool:
        """Tell whether the campaign is still a draft (its DAG must not deliver)."""
        return self.status == "draft"

    def utm_parameters(self) -> dict[str, str]:
        """Return the UTM parameters added to links, or nothing when tracking is disabled."""
        return utm_parameters_of(self.id, self.name, self.utm_tracking)

    def wire_messages(self) -> list[dict[str, Any]]:
        """Return LINE's ``messages`` JSON (camelCase) with UTM tags applied to the links."""
        params = self.utm_parameters()
        return [message.wire_tagged(params) for message in self.content.messages]

    def segment_sql_path(self, sql_root: pathlib.Path) -> pathlib.Path:
        """Return the segment's SQL file under ``sql_root`` (``segments/<parent>/<segment>.sql``)."""
        audience = self.target_audience
        return pathlib.Path(sql_root) / "segments" / audience.parent_segment / f"{audience.segment}.sql"


def utm_parameters_of(campaign_id: str, campaign_name: str, tracking: UtmTracking) -> dict[str, str]:
    """Return the UTM parameters of a campaign's tracking section (empty when disabled)."""
    if not tracking.enabled:
        return {}
    return utm.utm_parameters(campaign_id, campaign_name, tracking.parameters)


def tagging_problems(content: Content, params: dict[str, str]) -> list[tuple[Loc, str]]:
    """List every LINE limit that a message passes before UTM tagging and fails after it."""
    return [
        (("content", "messages", number, *loc), message)
        for number, item in enumerate(content.messages)
        for loc, message in item.tagging_problems(params)
    ]


def send_time(campaign: Campaign) -> datetime | None:
    """Return the planned send time of a scheduled campaign, ``None`` for other schedules."""
    schedule = campaign.delivery_schedule
    return schedule.send_at if isinstance(schedule, ScheduledSchedule) else None
