"""Every `.venv/bin/leadflow ...` command shown in the documentation site's code blocks
names a real command and real options, as the command line itself parses them (click's
parser, built from the typer app): the docs cannot drift from the CLI."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from leadflow.app.cli import app
from tests.support.paths import ROOT

DOCS = ROOT / "docs"
FENCE = re.compile(
    r"^(?P<indent> *)(?P<fence>```|~~~)(?P<lang>[\w-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)\s*$",
    re.MULTILINE | re.DOTALL,
)
SHELLS = {"bash", "sh", "shell", "console", "text", ""}
OPERATORS = {"&&", "||", ";", "|", "&", ";;"}
REDIRECTS = {">", ">>", "<", "<<", "2>", "&>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Shown:
    """A leadflow command line as a page shows it."""

    page: str
    line: str
    args: list[str]


def shown_commands(text: str, page: str) -> Iterator[Shown]:
    """The leadflow commands in a page's shell code blocks (`$ ` prompts included)."""
    for block in FENCE.finditer(text):
        if block["lang"] not in SHELLS:
            continue
        body = re.sub(r"\\\n", " ", block["body"])  # continuation lines
        for raw in body.splitlines():
            line = raw.strip().removeprefix("$ ")
            if ".venv/bin/leadflow" not in line:
                continue
            for command in _commands(line):
                yield Shown(page, line, command)


def _commands(line: str) -> Iterator[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens, current = list(lexer), []
    for token in [*tokens, ";"]:
        if token in OPERATORS:
            words = [w for w in current if not ASSIGNMENT.match(w)]
            words = words[1:] if words[:1] == ["time"] else words
            if words and words[0].endswith(".venv/bin/leadflow"):
                yield _until_redirect(words[1:])
            current = []
        else:
            current.append(token)


def _until_redirect(words: list[str]) -> list[str]:
    for i, word in enumerate(words):
        if word in REDIRECTS:
            return words[:i]
    return words


def problem(args: list[str]) -> str | None:
    """What is wrong with `leadflow ARGS`, or None. The command line itself resolves
    `leadflow ARGS --help`: an unknown command or option, or an option without its
    value, is a usage error there (and nothing runs: --help exits first). Then the
    positional arguments are counted against the command's."""
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="leadflow")
    if result.exit_code != 0:
        lines = (result.output or repr(result.exception)).splitlines()
        words = " ".join(line.strip(" │╭╮╰╯─") for line in lines if line.strip(" │╭╮╰╯─"))
        return words.split(" Error ", 1)[-1]
    command, rest = _resolve(args)
    return _count_arguments(command, rest) if command is not None else None


def _resolve(args: list[str]) -> tuple[object | None, list[str]]:
    """The command `args` name (None for a group given no command), and its own args."""
    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    rest = list(args)
    while hasattr(command, "get_command"):  # a group
        if not rest or rest[0].startswith("-"):
            return None, rest
        command = command.get_command(ctx, rest.pop(0))
    return command, rest


def _count_arguments(command: object, rest: list[str]) -> str | None:
    params = command.params  # type: ignore[attr-defined]
    takes_value = {
        opt
        for p in params
        if p.param_type_name == "option" and not p.is_flag and not p.count
        for opt in p.opts
    }
    positional, words = 0, iter(rest)
    for word in words:
        if word.startswith("-") and word != "-":
            if word in takes_value:
                next(words, None)
        else:
            positional += 1
    arguments = [p for p in params if p.param_type_name == "argument"]
    needed = sum(p.nargs if p.nargs > 0 else 1 for p in arguments if p.required)
    most = None if any(p.nargs < 0 for p in arguments) else sum(p.nargs for p in arguments)
    if positional < needed:
        return f"missing argument: {positional} given, {needed} needed"
    if most is not None and positional > most:
        return f"unexpected arguments: {positional} given, at most {most}"
    return None


def all_shown() -> list[Shown]:
    return [
        shown
        for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
        for shown in shown_commands(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    ]


def test_the_docs_show_many_leadflow_commands() -> None:
    shown = all_shown()
    pages = {s.page for s in shown}
    assert len(shown) >= 40 and len(pages) >= 10, (len(shown), sorted(pages))
    firsts = {s.args[0] for s in shown if s.args}
    assert {"run", "lead", "replay", "mode", "serve", "serve-webhook", "quarantine"} <= firsts


@pytest.mark.parametrize("shown", all_shown(), ids=lambda s: f"{s.page}:{' '.join(s.args)[:60]}")
def test_each_command_in_the_docs_parses(shown: Shown) -> None:
    assert problem(shown.args) is None, f"{shown.page}: {shown.line}\n{problem(shown.args)}"


@pytest.mark.parametrize(
    ("line", "wrong"),
    [
        (".venv/bin/leadflow runn examples/leads.csv", "No such command 'runn'"),
        (".venv/bin/leadflow run examples/leads.csv --batch", "No such option: --batch"),
        (".venv/bin/leadflow db revision -m x", "No such command 'revision'"),
        (".venv/bin/leadflow run", "missing argument"),
        (".venv/bin/leadflow lead '{}' '{}'", "unexpected arguments"),
        (
            "LEADFLOW_X=1 time .venv/bin/leadflow run a.csv --concurrency",
            "Invalid value for '--concurrency'",
        ),
    ],
)
def test_a_command_that_drifted_is_named(line: str, wrong: str) -> None:
    page = f"```bash\n{line}   # a comment\n```\n"
    (shown,) = shown_commands(page, "page.md")
    assert wrong in (problem(shown.args) or "")


def test_commands_are_found_through_prompts_continuations_and_operators() -> None:
    page = (
        "```text\n$ LEADFLOW_A='{\"x\": 1}' .venv/bin/leadflow run big.csv > out.txt\n```\n"
        "```bash\nexport A=1\n.venv/bin/leadflow mode shadow && .venv/bin/leadflow run \\\n"
        "  examples/leads.csv --batch-size 1\n```\n"
        "```python\nprint('.venv/bin/leadflow nothing')\n```\n"
    )
    found = [s.args for s in shown_commands(page, "page.md")]
    assert found == [
        ["run", "big.csv"],
        ["mode", "shadow"],
        ["run", "examples/leads.csv", "--batch-size", "1"],
    ]
    assert all(problem(args) is None for args in found)
