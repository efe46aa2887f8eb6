"""README's configuration table, rendered from the settings classes.

`python scripts/config_table.py` prints it; `--write` replaces the table between the
markers in README.md; `--check` exits 1 when README's table differs (tests do the same).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from bridge_api.settings import BridgeSettings
from wf_core.config import RESOURCE_VARIABLES, EngineSettings, SharedSettings

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
HEADER = "| variable | read by | type | default | meaning |\n| --- | --- | --- | --- | --- |"


def type_parts(annotation: Any) -> tuple[list[Any], list[Any]]:
    """The non-None types inside an annotation, and every constraint found on the way."""
    if get_origin(annotation) is Annotated:
        inner, *metadata = get_args(annotation)
        types_, found = type_parts(inner)
        for item in metadata:
            nested = item.metadata if isinstance(item, FieldInfo) else [item]
            found += [m for m in nested if isinstance(m, (Ge, Gt, Le, Lt))]
        return types_, found
    if get_origin(annotation) in (Union, types.UnionType):
        types_, found = [], []
        for arg in get_args(annotation):
            more, constraints = type_parts(arg)
            types_ += more
            found += constraints
        return types_, found
    if annotation is type(None):
        return [], []
    return [annotation], []


def _number(value: float) -> str:
    return f"{value:g}"


def _bound(constraint: Any) -> float:
    for attr in ("ge", "gt", "le", "lt"):
        if hasattr(constraint, attr):
            return float(getattr(constraint, attr))
    raise TypeError(constraint)


def type_text(field: FieldInfo) -> str:
    """`int ≥ 1`, `float > 0`, `int 1..65535`, `on` / `off`, `secret`, `text`..."""
    kinds, constraints = type_parts(field.annotation)
    constraints += [m for m in field.metadata if isinstance(m, (Ge, Gt, Le, Lt))]
    kind = kinds[0]
    if get_origin(kind) is Literal:
        return " / ".join(f"`{value}`" for value in get_args(kind))
    if kind is SecretStr:
        return "secret"
    if kind is str:
        return "text"
    low = next((c for c in constraints if isinstance(c, (Ge, Gt))), None)
    high = next((c for c in constraints if isinstance(c, (Le, Lt))), None)
    if low is not None and high is not None:
        return f"{kind.__name__} {_number(_bound(low))}..{_number(_bound(high))}"
    if low is not None:
        return f"{kind.__name__} {'>' if isinstance(low, Gt) else '≥'} {_number(_bound(low))}"
    return str(kind.__name__)


def default_text(field: FieldInfo) -> str:
    """The default as configured, or what unset means."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if field.default is None:
        return f"unset: {extra['unset']}" if extra.get("unset") else "unset"
    if field.default == "":
        return "empty"
    if isinstance(field.default, float):
        return f"`{_number(field.default)}`"
    return f"`{field.default}`"


def _row(name: str, reader: str, field: FieldInfo) -> str:
    cells = [f"`{name.upper()}`", reader, type_text(field), default_text(field)]
    return "| " + " | ".join([*cells, field.description or ""]) + " |"


def render() -> str:
    """The whole table: shared settings, the engine's, the bridge's, then the variables
    Dagster resources read themselves."""
    shared = SharedSettings.model_fields
    rows = [_row(name, "engine, bridge", field) for name, field in shared.items()]
    for cls, reader in ((EngineSettings, "engine"), (BridgeSettings, "bridge")):
        for name, field in cls.model_fields.items():
            if name not in shared:
                rows.append(_row(name, reader, field))
    reader = "engine (Dagster resource, `dg.EnvVar`)"
    for name, (kind, meaning) in RESOURCE_VARIABLES.items():
        rows.append(f"| `{name}` | {reader} | {kind} | unset | {meaning} |")
    return "\n".join([HEADER, *rows])


def readme_table(text: str) -> str:
    """The table between README's markers."""
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write(text: str) -> str:
    """README's text with the rendered table between the markers."""
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main() -> None:
    """Print the table; --write updates README.md, --check fails when it differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    if args.write:
        README.write_text(write(text))
    elif args.check:
        if readme_table(text) != render():
            sys.exit("README's configuration table differs: python scripts/config_table.py --write")
    else:
        print(render())


if __name__ == "__main__":
    main()
