"""No error message of taskgate holds a ``<...>`` placeholder: AI Task System's web page shows
an error's text as HTML (through Markdown), where ``<key>`` is a tag that vanishes, or worse.

The messages are read from the source: the text of every exception raised, of every
exception of taskgate's tree (taskgate.errors) or FastAPI's made anywhere, and of every error
answer built by a dialect's ``error(...)`` helper (the OpenAI wire's, for one)."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskgate import errors

SRC = Path(errors.__file__).parent
PLACEHOLDER = re.compile(r"<[^<>\s{}][^<>{}]*>")
ERROR_NAMES = {
    name
    for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, Exception)
} | {"HTTPException", "RequestValidationError", "ValueError", "error", "detail_error"}


def callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def texts(node: ast.AST) -> Iterator[str]:
    """The literal text in an expression: strings, and the fixed parts of f-strings."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def message_calls(tree: ast.AST) -> Iterator[ast.Call]:
    """The calls that make an error: those raised, and those of an error's name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            yield node.exc
        elif isinstance(node, ast.Call) and callee(node) in ERROR_NAMES:
            yield node


def placeholders(source: str) -> list[str]:
    found = []
    for call in message_calls(ast.parse(source)):
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            found += [f"line {call.lineno}: {t!r}" for t in texts(arg) if PLACEHOLDER.search(t)]
    return found


def test_no_error_message_in_taskgate_has_a_placeholder_in_angle_brackets() -> None:
    found = {
        str(path.relative_to(SRC)): hits
        for path in sorted(SRC.rglob("*.py"))
        if (hits := placeholders(path.read_text()))
    }
    assert found == {}


@pytest.mark.parametrize(
    "source",
    [
        "raise Unauthorized(\"send 'Authorization: Bearer <key>'\")",
        "raise errors.InvalidInput(f'{what} must be <a file id>, not {x!r}')",
        "err = BadRequest('use <name>', field='x')",
        "return wire.error(400, 'send <model>')",
        "raise HTTPException(404, detail='no <id>')",
    ],
)
def test_the_scan_finds_a_placeholder_wherever_a_message_is_made(source: str) -> None:
    assert placeholders(source)


@pytest.mark.parametrize(
    "source",
    [
        "raise BadRequest(f'limit must be < {most}')",
        "log.warning('<key>')",  # a log line, not an answer
        "raise BadRequest(f'{what} must be {{...}}: not {value!r}')",
    ],
)
def test_comparisons_and_other_text_are_not_placeholders(source: str) -> None:
    assert not placeholders(source)
