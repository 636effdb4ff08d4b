"""Load a campaign file into a ``Campaign``, or raise ``CampaignFileError`` with every problem."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any

from line_oa.campaign.validation import campaign_from_text, read_campaign_text
from line_oa.errors import CampaignFileError

if TYPE_CHECKING:
    import os

    from line_oa.campaign.model import Campaign


def parse_campaign(text: str, path: str) -> Campaign:
    """Parse campaign YAML ``text`` read from ``path``; raise ``CampaignFileError`` with every problem."""
    return _raise_or_return(path, *campaign_from_text(text, str(path)))


def load_campaign(path: str | os.PathLike[str]) -> Campaign:
    """Read and parse the campaign file at ``path``; raise ``CampaignFileError`` with every problem.

    Checks YAML syntax, the schema and LINE's message rules. Checks that depend on the clock or on
    other files (``send_at`` in the past, the segment SQL file) belong to
    :func:`line_oa.campaign.validation.validate_campaign_file`.
    """
    text, problems = read_campaign_text(path)
    if text is None:
        return _raise_or_return(str(path), None, problems)
    campaign, problems = campaign_from_text(text, str(path))
    if campaign is not None:
        campaign._source_path = pathlib.Path(path)
    return _raise_or_return(str(path), campaign, problems)


def _raise_or_return(path: str, campaign: Campaign | None, problems: list[Any]) -> Campaign:
    if problems or campaign is None:
        raise CampaignFileError(path, problems)
    return campaign
