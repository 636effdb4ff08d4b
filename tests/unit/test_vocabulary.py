"""One vocabulary: every status and reason the code writes is a member of ``line_oa.vocabulary``, and
every member carries the text the report and docs/operations.md show.

The source scan reads ``plugins/line_oa/**/*.py`` (the LINE simulator, LINE's side, has its own words)
and fails on a status or reason written as a bare string: in a place that takes a reason or a
status (``reason=``, ``_fail(row, …)``, ``request_stop(…)``, ``result.failed[…]``, ``row.status = …``,
``{"reason": …}``, comparisons with a ``…reason`` name, a ``*_REASONS`` tuple…), or anywhere as the
exact text of a known reason, or inside SQL (``status = '…'``). The scanner is tested on snippets
holding a new bare literal in each of those places.
"""

from __future__ import annotations

import ast
import io
import json
import pathlib
import re
import tokenize

import pytest

from line_oa.delivery_log.store import schema_sql
from line_oa.integration.report import NOT_SENT_HELP, UNKNOWN_REASON_HELP, reason_help, render_report_html
from line_oa.vocabulary import NO_REASON, RESUMABLE_REASONS, Reason, Status, reasons_markdown

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugins" / "line_oa"
SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if path.name != "vocabulary.py")
REASON_TEXTS = {reason.value for reason in Reason}

# Calls whose arguments are reasons: name -> positions (None: every argument).
REASON_ARGUMENTS = {"request_stop": None, "_CampaignStop": None, "_fail": (1,), "LedgerRow": (3,)}
STATUS_ARGUMENTS = {"LedgerRow": (2,)}
REASON_COUNTERS = {"failed", "excluded"}  # ``result.failed[reason]``, ``excluded.get(reason)``
# A campaign file's own ``status`` (draft or launched), not a delivery-log row's: the scan lets them be.
CAMPAIGN_FILE_STATUSES = {"draft", "launched"}
SQL_STATUS_LITERAL = re.compile(r"\bstatus\s*(?:=|<>|!=|IN)\s*\(?\s*'[a-z]", re.IGNORECASE)


# -- the members and their texts ------------------------------------------------------------------
def test_every_reason_says_what_it_means_and_what_to_do():
    for reason in Reason:
        assert reason.meaning.strip(), reason
        assert reason.what_to_do.strip(), reason
        assert reason.status in (Status.EXCLUDED, Status.FAILED), reason
        assert isinstance(reason.resumable, bool), reason
        assert reason.meaning.count("`") % 2 == 0, f"{reason}: unpaired backtick"
        assert reason.what_to_do.count("`") % 2 == 0, f"{reason}: unpaired backtick"


def test_every_status_says_what_it_means_and_what_to_do():
    assert [status.value for status in Status] == ["excluded", "pending", "sending", "sent", "failed"]
    for status in Status:
        assert status.meaning.strip(), status
        assert status.what_to_do.strip(), status


def test_members_are_the_text_the_log_stores():
    assert Reason.OVER_MAX_RECIPIENTS == "over_max_recipients"
    assert Reason("claim_lost") is Reason.CLAIM_LOST
    assert str(Reason.STOPPED) == "stopped"
    assert f"{Status.SENDING}" == "sending"
    assert json.dumps({Reason.AUTH_FAILED: Status.FAILED}) == '{"auth_failed": "failed"}'
    assert {Reason.QUOTA_EXCEEDED: 1} == {"quota_exceeded": 1}
    assert NO_REASON not in REASON_TEXTS


def test_resumable_reasons_are_failures_a_resumed_run_sends_again():
    assert set(RESUMABLE_REASONS) == {reason for reason in Reason if reason.resumable}
    assert all(reason.status == Status.FAILED for reason in RESUMABLE_REASONS)
    assert {"quota_exceeded", "auth_failed", "retries_exhausted", "stopped", "claim_lost"} <= set(
        RESUMABLE_REASONS
    )
    assert Reason.OUTCOME_UNKNOWN not in RESUMABLE_REASONS, "a key LINE forgot must never be sent blindly"


# -- the report --------------------------------------------------------------------------------------
def test_the_report_explains_every_reason():
    for reason in Reason:
        assert reason_help(reason) == (reason.meaning, reason.what_to_do)
        assert reason_help(reason.value) not in (UNKNOWN_REASON_HELP, NOT_SENT_HELP)
    summary = {
        "targeted": len(Reason),
        "excluded": {r.value: 1 for r in Reason if r.status == Status.EXCLUDED},
        "failed": {r.value: 1 for r in Reason if r.status == Status.FAILED},
    }
    page = render_report_html(summary, send_rate=[], messages_preview=[])
    assert UNKNOWN_REASON_HELP[0] not in page
    for reason in Reason:
        assert f"<code>{reason.value}</code>" in page
        first_words = reason.meaning.split("`")[0][:30]
        assert first_words.replace('"', "&quot;").replace("'", "&#x27;") in page, reason


# -- the docs ----------------------------------------------------------------------------------------
def docs_reason_table() -> str:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Failure reasons and what to do", 1)[1]
    lines = section.strip().splitlines()
    return (
        "\n".join(line for line in lines[: next(i for i, ln in enumerate(lines) if not ln.startswith("|"))])
        + "\n"
    )


def test_the_docs_reason_table_lists_exactly_the_reasons():
    table = docs_reason_table()
    listed = [re.match(r"\| `(\w+)` \|", row).group(1) for row in table.splitlines()[2:]]
    assert sorted(listed) == sorted(REASON_TEXTS)
    assert table == reasons_markdown(), (
        "docs/operations.md's reason table is generated: replace it with the output of "
        "python -c 'from line_oa.vocabulary import reasons_markdown; print(reasons_markdown(), end=\"\")'"
    )


# -- the SQL -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_log_table_accepts_exactly_the_statuses(dialect):
    ddl = schema_sql(dialect)
    check = re.search(r"CHECK \(status IN \(([^)]*)\)\)", ddl)
    assert check
    assert re.findall(r"'(\w+)'", check.group(1)) == [status.value for status in Status]


def test_the_unfinished_recipients_query_names_the_resumable_reasons():
    sql = (REPO / "include" / "sql" / "queries" / "unfinished_recipients.sql").read_text()
    listed = re.search(r"status = 'failed' AND reason IN \(([^)]*)\)", sql)
    assert listed
    assert re.findall(r"'(\w+)'", listed.group(1)) == list(RESUMABLE_REASONS)


# -- what extraction writes ------------------------------------------------------------------------
def test_extraction_writes_each_reason_with_its_status():
    from line_oa.integration.segment import classify

    user = "U" + "a" * 32
    rows = [
        (None, user),  # missing profile id
        ("p1", user),
        ("p1", "U" + "b" * 32),  # repeated profile id
        ("x" * 300, "U" + "c" * 32),  # invalid profile id
        ("p2", None),  # no LINE user id
        ("p3", "@shop"),  # not a LINE user id
        ("p4", user),  # same LINE user id as p1
        ("p5", "U" + "d" * 32),  # over max_recipients
    ]
    outcomes = {(status, reason) for _, _, status, reason, _ in classify(rows, max_recipients=1) if reason}
    assert {reason for _, reason in outcomes} == {
        "missing_profile_id", "duplicate_profile_id", "invalid_profile_id", "missing_recipient_id",
        "invalid_recipient_id", "duplicate_recipient", "over_max_recipients",
    }  # fmt: skip
    for status, reason in outcomes:
        assert isinstance(reason, Reason), reason
        assert status == reason.status, (status, reason)


# -- one name for the delivery log ------------------------------------------------------------------
LEDGER_IN_PROSE = re.compile(r"(?<![\w/.`])ledger(?![\w/`])", re.IGNORECASE)


def prose_calling_the_log_a_ledger(source: str, filename: str = "<snippet>") -> list[str]:
    """Return comments and strings that call the delivery log "ledger" (not identifiers or paths)."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and re.fullmatch(r"""[a-z]*(["'])ledger\1""", token.string):
            continue  # a path part, such as include/sql/ledger
        if token.type in (tokenize.COMMENT, tokenize.STRING):
            text = re.sub(r"\{[^{}]*\}", "", token.string)  # f-string fields are code
            for offset, line in enumerate(text.splitlines()):
                if LEDGER_IN_PROSE.search(line):
                    found.append(f"{filename}:{token.start[0] + offset}: {line.strip()}")
    return found


def test_the_delivery_log_has_one_name():
    from line_oa.delivery_log import store as ledger

    assert ledger.DeliveryLedger is ledger.DeliveryLog, "the deprecated alias still works"
    found = [
        problem
        for path in sorted(PACKAGE.rglob("*.py"))
        for problem in prose_calling_the_log_a_ledger(
            path.read_text(encoding="utf-8"), str(path.relative_to(REPO))
        )
    ]
    assert not found, 'say "delivery log" (identifiers such as ledger_hook keep their names):\n' + "\n".join(
        found
    )
    assert prose_calling_the_log_a_ledger('"""Open the ledger."""\nx = 1  # the ledger\'s rows\n') == [
        '<snippet>:1: """Open the ledger."""',
        "<snippet>:2: # the ledger's rows",
    ]
    assert prose_calling_the_log_a_ledger('assert x, "ledger writes only"') == [
        '<snippet>:1: "ledger writes only"'
    ]
    assert (
        prose_calling_the_log_a_ledger('f"run {ledger.run_id}"; hook = "line_oa_ledger"; d = "ledger"') == []
    )


# -- the source scan ---------------------------------------------------------------------------------
def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _literals(node: ast.AST | None) -> list[ast.Constant]:
    """The string constants an expression may evaluate to (through ``or``, ``if``/``else``, tuples)."""
    if node is None:
        return []
    if isinstance(node, ast.Constant):
        return [node] if isinstance(node.value, str) else []
    if isinstance(node, ast.BoolOp):
        return [c for value in node.values for c in _literals(value)]
    if isinstance(node, ast.IfExp):
        return _literals(node.body) + _literals(node.orelse)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [c for element in node.elts for c in _literals(element)]
    if isinstance(node, ast.Starred):
        return _literals(node.value)
    return []


def _is_reason_name(name: str) -> bool:
    """``reason``, ``stopped_reason``, ``RESUMABLE_REASONS``, ``CAMPAIGN_STOPS`` (not ``reason_help``)."""
    return name.lower().endswith(("reason", "reasons")) or name.upper().endswith("_STOPS")


def _assigned(target: ast.AST, value: ast.AST) -> list[tuple[str, ast.AST]]:
    """Pair each assigned name with its value (``row.status, row.reason = FAILED, "x"`` too)."""
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
        return [pair for t, v in zip(target.elts, value.elts, strict=True) for pair in _assigned(t, v)]
    return [(_name(target), value)]


def bare_words(source: str, filename: str = "<snippet>") -> list[str]:
    """Return "file:line: what" for every reason or status written as a bare string in ``source``."""
    found: list[str] = []

    def report(node: ast.AST | None, kind: str) -> None:
        for constant in _literals(node):
            if kind == "status" and constant.value in CAMPAIGN_FILE_STATUSES:
                continue
            found.append(f"{filename}:{constant.lineno}: {kind} {constant.value!r}")

    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in REASON_TEXTS:
                found.append(f"{filename}:{node.lineno}: the reason {node.value!r} spelled out")
            if SQL_STATUS_LITERAL.search(node.value):
                found.append(f"{filename}:{node.lineno}: a status spelled out in SQL: {node.value.strip()!r}")
        elif isinstance(node, ast.Call):
            called = _name(node.func)
            for keyword in node.keywords:
                if keyword.arg and _is_reason_name(keyword.arg):
                    report(keyword.value, "reason")
                elif keyword.arg == "status":
                    report(keyword.value, "status")
            for table, kind in ((REASON_ARGUMENTS, "reason"), (STATUS_ARGUMENTS, "status")):
                if called in table:
                    positions = table[called]
                    for index, argument in enumerate(node.args):
                        if positions is None or index in positions:
                            report(argument, kind)
            if called == "get" and _name(getattr(node.func, "value", None)) in REASON_COUNTERS and node.args:
                report(node.args[0], "reason")
        elif isinstance(node, ast.Subscript) and _name(node.value) in REASON_COUNTERS:
            report(node.slice, "reason")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in ("reason", "stopped_reason"):
                    report(value, "reason")
                elif isinstance(key, ast.Constant) and key.value == "status":
                    report(value, "status")
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if node.value is None:
                    continue
                for name, value in _assigned(target, node.value):
                    if _is_reason_name(name):
                        report(value, "reason")
                    elif name == "status":
                        report(value, "status")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [_name(operand) for operand in operands]
            if any(_is_reason_name(name) for name in names):
                for operand in operands:
                    report(operand, "reason")
            elif "status" in names:
                for operand in operands:
                    report(operand, "status")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args
            defaults = [None] * (len(arguments) - len(node.args.defaults)) + list(node.args.defaults)
            pairs = list(zip(arguments, defaults, strict=True))
            pairs += list(zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True))
            for argument, default in pairs:
                if _is_reason_name(argument.arg):
                    report(default, "reason")
            returns = ast.unparse(node.returns) if node.returns else ""
            if _is_reason_name(node.name) or "Reason" in returns:
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Return):
                        report(inner.value, "reason")
    return sorted(set(found))


def test_no_module_writes_a_status_or_reason_as_a_bare_string():
    found = [
        problem
        for path in SOURCES
        for problem in bare_words(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert not found, "use line_oa.vocabulary's Status / Reason members:\n" + "\n".join(found)


def test_the_scan_reads_every_module_that_writes_the_log():
    names = {path.name for path in SOURCES}
    assert {
        "engine.py",
        "store.py",
        "segment.py",
        "pipeline.py",
        "summary.py",
        "operators.py",
        "report.py",
    } <= names


NEW_BARE_WORDS = {
    "keyword": 'settle(unit, status=FAILED, reason="new_reason")',
    "fail": 'self._fail(row, "new_reason", result)',
    "stop": 'self.request_stop("new_reason")',
    "default": 'def request_stop(self, reason="new_reason"):\n    pass',
    "counter": 'result.failed["new_reason"] += 1',
    "counter get": 'result.failed.get("new_reason")',
    "fallback": 'result.failed[self._stop_reason or "new_reason"] += 1',
    "conditional": 'self.request_stop(Reason.A if slow else "new_reason")',
    "row": 'LedgerRow(profile_id, user, FAILED, "new_reason")',
    "row status": 'LedgerRow(profile_id, user, "failed", Reason.A)',
    "dict": 'outcome = {"status": FAILED, "reason": "new_reason"}',
    "attribute": 'row.status, row.reason = FAILED, "new_reason"',
    "status attribute": 'row.status = "sending"',
    "comparison": 'if reason in ("new_reason", Reason.A):\n    pass',
    "status comparison": 'if row.status == "sending":\n    pass',
    "returned": 'def _failure_reason(err):\n    return "new_reason"',
    "annotated return": 'def classify(err) -> Reason:\n    return "new_reason"',
    "tuple": 'CAMPAIGN_STOPS = ("new_reason", Reason.A)',
    "known reason anywhere": 'reasons = {"quota_exceeded"}',
    "sql": "sql = \"SELECT 1 FROM t WHERE status = 'pending'\"",
}


@pytest.mark.parametrize("snippet", NEW_BARE_WORDS.values(), ids=NEW_BARE_WORDS.keys())
def test_the_scan_catches_a_new_bare_word(snippet):
    assert bare_words(snippet), snippet


def test_the_scan_lets_members_and_other_strings_be():
    snippet = "\n".join(
        [
            "self._fail(row, Reason.OUTCOME_UNKNOWN, result)",
            "self.request_stop(Reason.LOG_STALLED if stalled else Reason.LOG_WRITE_FAILED)",
            'outcome = {"status": FAILED, "reason": reason, "line_message": "refused"}',
            'summary = {"sent": 1, "failed": {}, "excluded": {}}',
            "sql = f\"WHERE status = '{SENT}' AND reason IN ({marks})\"",
            'log.info("chunk %d: delivery stopped (%s)", index, reason)',
        ]
    )
    assert bare_words(snippet) == []
