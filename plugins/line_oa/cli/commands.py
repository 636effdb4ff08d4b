"""Command line of the project: ``python -m line_oa <command>``, no running Airflow needed.

Commands are listed in :data:`COMMANDS`; to add one, write an ``add_arguments(parser)`` and a
``run(args) -> exit code`` function and register them there. Every user mistake (unknown file, broken
YAML, a campaign over LINE's limits) ends with a message and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
from typing import TYPE_CHECKING, NamedTuple, TextIO

from line_oa import settings
from line_oa.campaign import loading as loading_module
from line_oa.campaign.preview import preview_file
from line_oa.campaign.validation import ValidationReport, validate_campaign_file
from line_oa.errors import LineOAError

if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_OK = 0
EXIT_PROBLEMS = 1


class Command(NamedTuple):
    """One subcommand: its one-line help, how it adds its arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        type=pathlib.Path,
        help="campaign files (default: every *.yaml in --campaigns-dir)",
    )
    parser.add_argument(
        "--campaigns-dir",
        type=pathlib.Path,
        help="folder searched when no file is given (default: [line_oa] campaigns_dir)",
    )
    parser.add_argument(
        "--sql-root",
        type=pathlib.Path,
        help="folder holding segments/<parent>/<segment>.sql (default: [line_oa] sql_root)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def run_validate(args: argparse.Namespace) -> int:
    """Check campaign files before launch; exit 1 when any file has a problem."""
    files = list(args.files)
    if not files:
        campaigns_dir = _setting(args.campaigns_dir, settings.campaigns_dir)
        files = [_relative(path) for path in sorted(pathlib.Path(campaigns_dir).glob("*.yaml"))]
        if not files:
            print(f"no campaign files (*.yaml) in {campaigns_dir}", file=sys.stderr)
            return EXIT_PROBLEMS
    sql_root = _setting(args.sql_root, settings.sql_root)
    reports = [validate_campaign_file(path, sql_root=sql_root) for path in files]
    all_ok = all(report.ok for report in reports)
    if args.format == "json":
        document = {"ok": all_ok, "files": [report.to_dict() for report in reports]}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for report in reports:
            print_report(report, sys.stdout)
        failed = sum(not report.ok for report in reports)
        problems = sum(len(report.problems) for report in reports)
        print(
            f"\n{len(reports)} file(s) checked: {len(reports) - failed} OK, {failed} with problems"
            + (f" ({problems} problems)" if problems else "")
        )
    return EXIT_OK if all_ok else EXIT_PROBLEMS


def _setting(value: pathlib.Path | None, accessor: Callable[[], pathlib.Path]) -> pathlib.Path:
    """Return ``value``, else the ``[line_oa]`` setting.

    Reading a setting imports Airflow's config; what Airflow logs then (such as the warning about a
    deprecated ``LINE_OA_*`` name) goes to stderr, as stdout is for the report.
    """
    if value is not None:
        return value
    with contextlib.redirect_stdout(sys.stderr):
        return accessor()


def _relative(path: pathlib.Path) -> pathlib.Path:
    """Show ``path`` relative to the working directory when it is below it."""
    try:
        return path.resolve().relative_to(pathlib.Path.cwd())
    except ValueError:
        return path


def print_report(report: ValidationReport, stream: TextIO) -> None:
    """Print one file's report: OK, or its problems under a heading per tab."""
    if report.ok:
        campaign = report.campaign
        summary = f" ({campaign.id}, {campaign.status}, DAG {campaign.dag_id})" if campaign else ""
        print(f"{report.file}: OK{summary}", file=stream)
        return
    count = len(report.problems)
    print(f"{report.file}: {count} problem{'s' if count != 1 else ''}", file=stream)
    for tab, problems in report.by_tab().items():
        print(f"  {tab}", file=stream)
        for problem in problems:
            where = f"line {problem.line}: " if problem.line else ""
            subject = f"{problem.path}: " if problem.path else ""
            print(f"    {where}{subject}{problem.message}", file=stream)


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=pathlib.Path, help="campaign file")


def run_render(args: argparse.Namespace) -> int:
    """Print the exact LINE ``messages`` JSON of a campaign, after UTM tagging (a personalized
    campaign's placeholders shown as written, where each recipient's value goes)."""
    try:
        campaign = loading_module.load_campaign(args.file)
    except LineOAError as error:
        print_report(ValidationReport(str(args.file), None, list(getattr(error, "problems", []))), sys.stderr)
        return EXIT_PROBLEMS
    from line_oa.campaign.personalization import bundle_of

    print(json.dumps(bundle_of(campaign).as_written(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=pathlib.Path, help="campaign file")
    parser.add_argument(
        "-o",
        "--output",
        type=pathlib.Path,
        help="HTML file to write (default: <file name>.preview.html in the current folder; - for stdout)",
    )
    parser.add_argument(
        "--sql-root",
        type=pathlib.Path,
        help="folder holding segments/<parent>/<segment>.sql (default: [line_oa] sql_root)",
    )
    parser.add_argument("--sender-name", help="name shown in the chat header (default: content.line_config)")


def run_preview(args: argparse.Namespace) -> int:
    """Write the smartphone preview of a campaign file as one HTML page, its problems included.

    Exits 0 when the page is written, problems or not (the page shows them); 1 with one line naming
    the file when the file cannot be read or parsed at all, or the page cannot be written.
    """
    result = preview_file(args.file, sql_root=_setting(args.sql_root, settings.sql_root))
    if result.content is None:
        first = result.report.problems[0] if result.report.problems else None
        where = f"{args.file}:{first.line}" if first and first.line else str(args.file)
        what = " ".join(first.message.split()) if first else "not a campaign file"
        print(f"error: {where}: cannot be previewed: {what}", file=sys.stderr)
        return EXIT_PROBLEMS
    page = result.page(sender_name=args.sender_name)
    if args.output is not None and str(args.output) == "-":
        sys.stdout.write(page)
        return EXIT_OK
    target = args.output or pathlib.Path(f"{args.file.stem}.preview.html")
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as error:
        print(f"error: {target}: cannot write the preview: {error.strerror or error}", file=sys.stderr)
        return EXIT_PROBLEMS
    count = len(result.report.problems)
    print(
        f"{target}: preview of {args.file}, {len(result.content.messages)} message(s), "
        f"{count} problem{'s' if count != 1 else ''}"
    )
    return EXIT_OK


# Register a new subcommand here: name -> Command(help, add_arguments, run).
COMMANDS: dict[str, Command] = {
    "validate": Command(
        "check campaign files before launch (every problem, grouped by tab)",
        _add_validate_arguments,
        run_validate,
    ),
    "render": Command(
        "print the LINE messages JSON of a campaign after UTM tagging", _add_render_arguments, run_render
    ),
    "preview": Command(
        "write the smartphone preview of a campaign (bubbles, imagemap areas, tagged links, problems) as HTML",
        _add_preview_arguments,
        run_preview,
    ),
    "status": Command(
        "print each campaign's state (Draft, Planned, Active, Finished, Suspended) and latest run's counts",
        lambda parser: _status().add_arguments(parser),
        lambda args: _status().run(args),
    ),
    "insights": Command(
        "print LINE's impressions and clicks of a campaign (default: every campaign collected)",
        lambda parser: _insights().add_arguments(parser),
        lambda args: _insights().run(args),
    ),
}


def _insights():
    """Import the insights command lazily: it reads the delivery log's database."""
    from line_oa.cli import insights

    return insights


def _status():
    """Import the status command lazily: it needs Airflow's metadata DB, validate and render do not."""
    from line_oa.integration import status

    return status


def build_parser() -> argparse.ArgumentParser:
    """Build the ``python -m line_oa`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="python -m line_oa", description="LINE campaign files: check, render and preview."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LineOAError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
