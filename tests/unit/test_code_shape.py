"""Small files, small functions: no module under plugins/ past 450 lines, no function past 60.

The house style says a module past about 400 lines or a function past about 50 is probably two
things; these limits leave a little room above that, so the test fails on real growth, not on a
docstring. A function's size is its lines from ``def`` to its last line (decorators not counted);
a nested function counts inside its parent too. What is already over, and not yet split, is listed
below with the reason; the list may only shrink: an entry that is no longer over fails the test
until it is removed.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60

# Modules over MAX_MODULE_LINES, not yet split: path under plugins/ -> why.
MODULES_NOT_YET_SPLIT: dict[str, str] = {}

# Functions over MAX_FUNCTION_LINES, not yet split: "path under plugins/::qualified name" -> why.
FUNCTIONS_NOT_YET_SPLIT = {
    # The demo's sample CDP: argument checks, the row counter and the SQLite bulk load in one recipe.
    "line_oa/cli/sample_cdp.py::generate_sample_cdp": "demo data generator written as one recipe",
    # The simulator's acceptance of a send: retry key, recipients, quota, record. It must never await
    # (one step under the event loop), which keeps it in one piece until its checks become helpers.
    "line_simulator/routes.py::accept": "the simulator's whole acceptance rule in one synchronous step",
}


def function_sizes(source: str) -> dict[str, int]:
    """Return every function's qualified name (``Class.method``, ``outer.inner``) and its line count."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    sizes[name] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return sizes


def measure(root: pathlib.Path) -> tuple[dict[str, int], dict[str, int]]:
    """Return the line count of every module under ``root`` and the size of every function in them."""
    modules: dict[str, int] = {}
    functions: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        modules[name] = len(source.splitlines())
        functions.update({f"{name}::{qualname}": n for qualname, n in function_sizes(source).items()})
    return modules, functions


def oversized(root: pathlib.Path) -> tuple[dict[str, int], dict[str, int]]:
    modules, functions = measure(root)
    return (
        {name: n for name, n in modules.items() if n > MAX_MODULE_LINES},
        {name: n for name, n in functions.items() if n > MAX_FUNCTION_LINES},
    )


def test_no_new_module_or_function_grows_past_the_limits():
    modules, functions = oversized(PLUGINS)
    new = [
        f"{name}: {n} lines (limit {MAX_MODULE_LINES})"
        for name, n in modules.items()
        if name not in MODULES_NOT_YET_SPLIT
    ] + [
        f"{name}: {n} lines (limit {MAX_FUNCTION_LINES})"
        for name, n in functions.items()
        if name not in FUNCTIONS_NOT_YET_SPLIT
    ]
    assert not new, "split along the seam a newcomer would expect:\n" + "\n".join(new)


def test_the_allow_lists_name_only_what_is_still_over_the_limits():
    modules, functions = oversized(PLUGINS)
    stale = sorted(set(MODULES_NOT_YET_SPLIT) - set(modules)) + sorted(
        set(FUNCTIONS_NOT_YET_SPLIT) - set(functions)
    )
    assert not stale, "split (or gone): remove from the allow-list in this file:\n" + "\n".join(stale)


def write_module(folder: pathlib.Path, name: str, source: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


def function_of(lines: int, name: str = "grown", indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 2))
    return f"{indent}def {name}():\n{body}{indent}    return 0\n"


@pytest.mark.parametrize(
    ("lines", "flagged"),
    [(MAX_FUNCTION_LINES, False), (MAX_FUNCTION_LINES + 1, True)],
    ids=["a function of exactly the limit passes", "one line more is flagged"],
)
def test_the_function_limit_is_measured_from_def_to_the_last_line(tmp_path, lines, flagged):
    write_module(tmp_path, "pkg/mod.py", "@decorated\n" + function_of(lines))
    _, functions = oversized(tmp_path)
    assert ("pkg/mod.py::grown" in functions) is flagged


@pytest.mark.parametrize(
    ("lines", "flagged"),
    [(MAX_MODULE_LINES, False), (MAX_MODULE_LINES + 1, True)],
    ids=["a module of exactly the limit passes", "one line more is flagged"],
)
def test_the_module_limit_counts_every_line(tmp_path, lines, flagged):
    write_module(tmp_path, "pkg/big.py", "".join(f"x{i} = {i}\n" for i in range(lines)))
    modules, _ = oversized(tmp_path)
    assert ("pkg/big.py" in modules) is flagged


def test_methods_and_nested_functions_are_named_by_where_they_live(tmp_path):
    method = function_of(MAX_FUNCTION_LINES + 1, "send", indent="    ")
    inner = function_of(MAX_FUNCTION_LINES + 1, "inner", indent="    ")
    write_module(tmp_path, "pkg/mod.py", f"class Sender:\n{method}def outer():\n{inner}    return inner\n")
    _, functions = oversized(tmp_path)
    assert set(functions) == {"pkg/mod.py::Sender.send", "pkg/mod.py::outer", "pkg/mod.py::outer.inner"}
