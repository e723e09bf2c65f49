"""The reference pages, generated from the code at every build so they cannot drift.

A page asks for generated content with a marker on a line of its own:

    <!-- generated: settings -->            every settings class, leadflow's and each adapter's
    <!-- generated: settings crm.hubspot --> one adapter's settings (for its how-to page)
    <!-- generated: settings StreamSettings --> one settings class's, by its name
    <!-- generated: cli -->                 the command line, from the typer app
    <!-- generated: chart -->               the committed benchmark chart, or how to make one

The API pages (mkdocstrings) read the code as it installs: `flows/`, `integrations/` and
`app/` are the subpackages `leadflow.flows`, `leadflow.integrations` and `leadflow.app`
(pyproject.toml's package-dir), which griffe cannot follow by path; `on_config` copies
the package in that layout to build/docs-api/, which mkdocs.yml gives griffe.

The settings come from the pydantic classes the command line checks variables against
(`leadflow.app.console.settings_classes()`): their fields' descriptions, types, bounds and
defaults. The command line comes from typer's own Markdown generator (what
`typer leadflow.app.cli utils docs` prints). An unknown marker fails the build.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import tomllib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import annotated_types
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

MARKER = re.compile(r"^<!-- generated: (?P<what>[a-z]+)(?: (?P<arg>\S+))? -->$", re.MULTILINE)
ENTRY_POINT_GROUP = "leadflow.adapters"


API_TREE = Path("build/docs-api")


@event_priority(100)  # before mkdocstrings' own on_config, which drops a path not there yet
def on_config(config: Any) -> Any:
    """build/docs-api/leadflow/: a copy of the package in its installed layout (griffe
    follows symlinks back to the folders, so they would not do). It runs first: on a
    fresh clone the folder must exist before mkdocstrings reads its `paths`."""
    root = Path(config.config_file_path).parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    tree = root / API_TREE
    shutil.rmtree(tree, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__")
    # the core first, then the folders that install inside it (flows/ -> leadflow/flows)
    for package, folder in sorted(setuptools["package-dir"].items()):
        shutil.copytree(root / folder, tree.joinpath(*package.split(".")), ignore=skip)
    return config


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    def expand(match: re.Match[str]) -> str:
        what, arg = match["what"], match["arg"]
        if what == "settings" and arg is None:
            return settings_reference()
        if what == "settings":
            return settings_table(arg)
        if what == "cli" and arg is None:
            return cli_reference()
        if what == "chart" and arg is None:
            return bench_chart(Path(page.file.abs_src_path).parent)
        raise PluginError(f"{page.file.src_path}: unknown marker {match[0]!r}")

    return MARKER.sub(expand, markdown)


# --- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name(s), the field behind it."""

    variables: list[str]
    field: FieldInfo


def settings_reference() -> str:
    """Every leadflow settings class: leadflow's sections, shadow mode, the receiver and
    the stream, then each built-in adapter's, in `leadflow adapters` order."""
    from leadflow.app.console import settings_classes

    owners = adapter_names_by_settings_class()
    ours = [c for c in settings_classes() if c.__module__.startswith("leadflow.")]
    # (a plug-in installed where the docs are built is not leadflow's); some classes
    # are listed twice (the receiver's is also an AdapterSettings), hence dict.fromkeys
    own = [c for c in dict.fromkeys(ours) if c not in owners]
    parts = [_settings_section(cls, _title(cls)) for cls in own]
    for cls, names in sorted(owners.items(), key=lambda item: _adapter_order(item[1][0])):
        title = "Adapter " + ", ".join(f"`{name}`" for name in names)
        parts.append(_settings_section(cls, title))
    return "\n".join(parts)


def _adapter_order(entry: str) -> tuple[int, str]:
    """`leadflow adapters` order: by kind as the interfaces list them, then by name."""
    from leadflow.integrations.base import KINDS

    kind, _, name = entry.partition(".")
    return (list(KINDS).index(kind) if kind in KINDS else len(KINDS), name)


def settings_table(name: str) -> str:
    """The settings table of the adapter registered as `name` (`kind.name`), or of the
    settings class called `name`."""
    from leadflow.app.console import settings_classes

    for cls, entries in adapter_names_by_settings_class().items():
        if name in entries:
            return _table(list(settings_of(cls)))
    for cls in settings_classes():
        if cls.__name__ == name and cls.__module__.startswith("leadflow."):
            return _table(list(settings_of(cls)))
    raise PluginError(f"no built-in adapter or settings class {name!r} with settings")


def adapter_names_by_settings_class() -> dict[type, list[str]]:
    """Settings class -> the `kind.name` of each built-in adapter that reads it."""
    found: dict[type, list[str]] = {}
    for entry in distribution("leadflow").entry_points:
        if entry.group == ENTRY_POINT_GROUP:
            settings_class = getattr(entry.load(), "settings_class", None)
            if settings_class is not None:
                found.setdefault(settings_class, []).append(entry.name)
    return found


def settings_of(cls: type[BaseSettings]) -> Iterator[Setting]:
    """The variables a settings class reads, nested sections flattened."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    yield from _fields(cls, prefix, delimiter)


def _fields(model: type[BaseModel], prefix: str, delimiter: str) -> Iterator[Setting]:
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        nested = _model(field.annotation)
        keyed = _keyed_model(field.annotation)
        if nested is not None:
            yield from _fields(nested, variable + delimiter, delimiter)
        elif keyed is not None:
            placeholder = "<ADAPTER>" if name == "limits" else "<NAME>"
            yield from _fields(keyed, f"{variable}{delimiter}{placeholder}{delimiter}", delimiter)
        else:
            yield Setting(_aliases(field.validation_alias) or [variable], field)


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if _is_model(annotation) else None


def _keyed_model(annotation: Any) -> type[BaseModel] | None:
    """`dict[str, SomeModel]`: one section per key."""
    if typing.get_origin(annotation) is dict:
        value = typing.get_args(annotation)[1]
        return value if _is_model(value) else None
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _aliases(alias: object) -> list[str]:
    """A field read under an alias is read under that name only (not the prefixed one)."""
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    return [c.upper() for c in choices if isinstance(c, str) and c.upper().startswith("LEADFLOW_")]


def _settings_section(cls: type[BaseSettings], title: str) -> str:
    settings = list(settings_of(cls))
    groups: dict[str, list[Setting]] = {}
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "")
    for setting in settings:
        rest = setting.variables[0].removeprefix(prefix)
        section = rest.split(delimiter)[0] if delimiter and delimiter in rest else ""
        groups.setdefault(section, []).append(setting)
    out = [f"## {title}", ""]
    doc = _doc(cls) if cls.__name__ != "Settings" else ""  # its docstring is for developers
    if doc:
        out += [_prose(doc), ""]
    for section, rows in groups.items():
        if section:
            out += [f"### `{prefix}{section}{delimiter}*`", ""]
            field = cls.model_fields[section.lower()]
            doc = field.description or _doc(_model(field.annotation) or object)
            if doc:
                out += [_prose(doc), ""]
        out += [_table(rows), ""]
    return "\n".join(out)


def _title(cls: type) -> str:
    titles = {
        "Settings": "leadflow",
        "ShadowSettings": "Shadow mode, the report and the cut-over",
        "ReceiverSettings": "The webhook receiver (`leadflow serve-webhook`)",
        "StreamSettings": "The real-time stream",
    }
    return titles.get(cls.__name__, cls.__name__)


def _doc(cls: type) -> str:
    """The class docstring's first paragraph, unless it is only inherited."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or cls.__module__ == "pydantic.main":
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _table(settings: list[Setting]) -> str:
    lines = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for s in settings:
        names = "<br>".join(_variable(v) for v in s.variables)
        description = _cell(_prose(s.field.description or ""))
        lines.append(f"| {names} | {_type(s.field)} | {_default(s.field)} | {description} |")
    # docs/stylesheets/extra.css gives the names room
    return '<div class="settings-table" markdown>\n\n' + "\n".join(lines) + "\n\n</div>"


def _variable(name: str) -> str:
    """A variable name that may wrap after an underscore, not in the middle of a word
    (raw HTML, so the underscores are entities: Markdown would read `_X_` as emphasis)."""
    parts = html.escape(name).split("_")
    return "<code>" + "&#95;<wbr>".join(parts) + "</code>"


CODE_LIKE = re.compile(r"(LEADFLOW_[A-Z0-9_<>]+|__[A-Z0-9_]+|\{[^{}]*\}|\[[^\[\]]*\])")


def _prose(text: str) -> str:
    """A description as Markdown: variable names, JSON and lists as code, so that
    underscores are not emphasis and `{...}` is not read as attributes."""
    pieces = re.split(r"(`[^`]*`)", text)  # what is already code stays as it is
    return "".join(
        piece if piece.startswith("`") else CODE_LIKE.sub(r"`\1`", piece) for piece in pieces
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type(field: FieldInfo) -> str:
    annotation, optional = _unwrap_optional(field.annotation)
    text = _type_name(annotation) + _bounds(field)
    return f"{text}, optional" if optional else text


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is dict:
        return "JSON object"
    if origin in (list, tuple, set, frozenset):
        return "JSON list"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    names = {
        bool: "`true` / `false`",
        int: "integer",
        float: "number",
        str: "text",
        Path: "path",
        SecretStr: "secret",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    words = {
        annotated_types.Ge: ("≥", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("≤", "le"),
        annotated_types.Lt: ("<", "lt"),
    }
    parts = []
    for item in field.metadata:
        for kind, (sign, attr) in words.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attr)}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list | tuple):
        return f"`{_cell(json.dumps(value))}`"
    if isinstance(value, Enum):
        value = value.value
    text = str(value)
    return f"`{_cell(text)}`" if text else "`''`"


# --- the command line -------------------------------------------------------------------


def cli_reference() -> str:
    """Every command, argument and option of `leadflow`, as typer documents them."""
    import typer
    from typer.cli import get_docs_for_click
    from typer.core import MARKUP_MODE_KEY

    from leadflow.app.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, obj={MARKUP_MODE_KEY: app.rich_markup_mode})
    return get_docs_for_click(obj=command, ctx=ctx, indent=1, name="leadflow").strip()


# --- the benchmark chart ----------------------------------------------------------------

CHART = Path("benchmarks/bench.svg")


def bench_chart(page_dir: Path) -> str:
    """The chart `leadflow bench --chart` wrote, once committed beside the page."""
    if (page_dir / CHART).is_file():
        return f"![The latest committed run of leadflow bench]({CHART.as_posix()})"
    return (
        '!!! note "No chart committed yet"\n'
        "    `make bench` writes `bench.svg`; copy it to `docs/benchmarks/bench.svg` and\n"
        "    commit it to show it here."
    )
