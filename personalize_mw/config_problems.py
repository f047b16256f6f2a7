"""From validation errors to what a YAML author reads: one line per mistake, with its line.

Pydantic reports a misspelt key twice (the unknown key, the missing one) and a
value of a union once per member; here each becomes one problem. A file with
schema errors still gets its semantic checks (conditions, templates,
strategies): the pieces that failed are replaced by stand-ins that validate,
so the rest is checked and nothing is reported twice.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .errors import KeyPath, Problem

STAND_IN = _STAND_IN = "_stand_in"  # a name the schema accepts and no YAML author writes
M = TypeVar("M", bound=BaseModel)
_UNIONS = (Union, types.UnionType)  # Union[X, Y] and X | Y


def line_of(node: yaml.Node | None, path: KeyPath) -> int | None:
    """The 1-based line of the deepest key (or list item) that the key path reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key or k.value == str(key)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]  # the key's line: a block value starts below it
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def in_file_order(problems: list[Problem], node: yaml.Node | None) -> list[tuple[Problem, int | None]]:
    located = [(problem, line_of(node, problem[0])) for problem in problems]
    return sorted(located, key=lambda found: found[1] or 0)


def _walk(schema: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[str | int, ...], int | None, Any]:
    """Follow an error location through the schema.

    Returns the key path as in the YAML (without the member labels pydantic puts
    after a union, ``if`` for ``if_``), where in it the last union is, and the
    type reached (None past what the schema describes).
    """
    kind: Any = schema
    path: list[str | int] = []
    union: int | None = None
    for part in loc:
        members = [a for a in get_args(kind) if a is not type(None)] if get_origin(kind) in _UNIONS else [kind]
        if len(members) > 1:  # this part names the member tried, e.g. 'str' or 'list[str]'
            union = len(path)
            kind = next((m for m in members if (get_origin(m) is list) == str(part).startswith("list[")), None)
            continue
        kind = members[0]
        if isinstance(part, str) and part.startswith("function-"):
            continue  # a validator's wrapper, not a key
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            kind = field.annotation if field is not None else None
            part = field.alias if field is not None and field.alias else part
        elif get_origin(kind) in (dict, list):
            kind = get_args(kind)[-1]
        else:
            kind = None
        path.append(part)
    return tuple(path), union, kind


def _keys_of(kind: Any) -> list[str]:
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [f.alias or name for name, f in kind.model_fields.items()]
    return []


def pydantic_problems(schema: type[BaseModel], error: ValidationError) -> list[Problem]:
    found = []  # (key path, where its union is, error type, message, the keys allowed beside it)
    for item in error.errors():
        path, union, _ = _walk(schema, item["loc"])
        keys = _keys_of(_walk(schema, item["loc"][:-1])[2]) if item["type"] == "extra_forbidden" else []
        found.append((path, union, item["type"], item["msg"], keys))
    # A union's members each report: when one got inside the value, the others' "not a
    # list / not a mapping" is noise; when none did, one line says what would do.
    deep = {p[:u] for p, u, *_ in found if u is not None and len(p) > u}
    shallow: dict[tuple[str | int, ...], list[str]] = {}
    for path, union, _, message, _ in found:
        if union is not None and len(path) == union and path not in deep:
            shallow.setdefault(path, []).append(message)
    found = [f for f in found if not (f[1] is not None and len(f[0]) == f[1])]
    found += [(path, None, "union", " or ".join([first] + [m.removeprefix("Input should be ") for m in more]), [])
              for path, (first, *more) in shallow.items()]
    # A misspelt key is one mistake, not two: the unknown key and the missing one it was meant to be.
    missing = {path for path, _, kind, _, _ in found if kind == "missing"}
    meant: set[tuple[str | int, ...]] = set()
    problems = []
    for path, _, kind, message, keys in found:
        if kind == "extra_forbidden" and path:
            parent, key = path[:-1], str(path[-1])
            close = difflib.get_close_matches(key, [str(m[-1]) for m in missing if m[:-1] == parent], n=1)
            if close:
                meant.add(parent + (close[0],))
            close = close or difflib.get_close_matches(key, keys, n=1)
            if close:
                message = f"{message}: did you mean {close[0]!r}?"
        problems.append((path, message))
    return [(path, message) for path, message in problems if path not in meant]


def _stand_in(data: dict[str, Any], loc: tuple[str | int, ...], name: re.Pattern[str]) -> None:
    """Replace the smallest piece of ``data`` holding the schema error at ``loc`` by one that validates.

    A stand-in keeps the name (a list item, its place) of what it replaces: a
    reference to it is not reported a second time, and the key paths, so the
    lines, of its siblings stay right. The config is refused anyway; stand-ins
    only ever reach the semantic checks.
    """
    head = loc[0] if loc else None
    named = data.get(head) if isinstance(head, str) else None
    if not loc:  # the only check on the whole file: the renamed 'queue:'
        data.pop("queue", None)
    elif head == "enrichment" and isinstance(named, dict) and len(loc) > 1 and loc[1] in named:
        named[loc[1]] = {"type": STAND_IN}  # its fields stay known: conditions reading them are not reported
    elif len(loc) == 1 and isinstance(named, dict) and head in ("segments", "goals", "slots", "enrichment"):
        data[head] = {k: v for k, v in named.items() if isinstance(k, str) and name.match(k)}  # bad names
    elif head == "goals" and isinstance(named, dict) and loc[1] in named:
        named[loc[1]] = {"path": "/"}
    elif head == "slots" and isinstance(named, dict) and loc[1] in named:
        slot, key = named[loc[1]], loc[2] if len(loc) > 2 else None
        index = loc[3] if len(loc) > 3 else None
        if not isinstance(slot, dict):
            named[loc[1]] = {}
        elif key in ("holdout", "experiment"):
            del slot[key]  # the default holds
        elif key == "rules" and isinstance(slot.get(key), list) and isinstance(index, int):
            rule = slot[key][index]
            condition = rule.get("if", {"path": "/"}) if isinstance(rule, dict) else {"path": "/"}
            slot[key][index] = {"if": condition, "variant": _STAND_IN, "template": ""}  # its `if:` is still checked
        elif key == "variants" and isinstance(slot.get(key), list) and isinstance(index, int):
            slot[key][index] = {"variant": f"{_STAND_IN}{index}", "template": ""}
        elif key == "stages" and isinstance(slot.get(key), dict) and index in slot[key]:
            slot[key][index] = {"variant": _STAND_IN, "template": ""}
        else:  # a wrong strategy or shape: what the slot would compile to is unknown
            named[loc[1]] = {}
    elif loc[:2] == ("journey", "stages") and len(loc) > 2 and isinstance(loc[2], int):
        stage = data["journey"]["stages"][loc[2]]
        stage_name = stage.get("name") if isinstance(stage, dict) else None
        ok = isinstance(stage_name, str) and name.match(stage_name)
        data["journey"]["stages"][loc[2]] = {"name": stage_name if ok else f"{_STAND_IN}{loc[2]}"}
    elif head == "secret_keys":
        data[head] = ["0" * 16]
    elif isinstance(head, str):
        data.pop(head, None)  # a section's defaults hold


def validated(schema: type[M], data: dict[str, Any], name: re.Pattern[str]) -> tuple[M | None, list[Problem]]:
    """(the config, []) or (a stand-in config for the semantic checks or None, the schema's problems).

    ``data`` is changed in place (the loader's own copy); ``name`` is what names of
    slots, goals, segments and stages match.
    """
    try:
        return schema.model_validate(data), []
    except ValidationError as exc:
        problems = pydantic_problems(schema, exc)
    locs = [loc for loc, _ in problems]
    for _ in range(3):  # a stand-in may uncover an error below the one it replaced
        for loc in locs:
            try:
                _stand_in(data, loc, name)
            except (KeyError, IndexError, TypeError, AttributeError):
                return None, problems  # a shape no stand-in fits: the schema's problems alone
        try:
            return schema.model_validate(data), problems
        except ValidationError as exc:
            locs = [loc for loc, _ in pydantic_problems(schema, exc)]
    return None, problems
