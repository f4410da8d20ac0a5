"""The README's parameter table, generated from ``hercules_core.config.PARAMETERS``.

    .venv/bin/python scripts/param_table.py           # print the table
    .venv/bin/python scripts/param_table.py --write   # replace it in README.md, between the markers

``tests/test_param_table.py`` fails when README.md differs from what this renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hercules_core.config import PARAMETERS, Choices, Parameter  # noqa: E402

README = ROOT / "README.md"
BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(p: Parameter) -> str:
    return json.dumps(list(p.default) if p.kind is tuple else p.default)  # as a --config file says it


def _allowed(p: Parameter) -> str:
    if p.kind is bool:
        return "true, false"
    if p.check is None:
        return "any text" if p.kind is str else "a JSON object" if p.kind is dict else ""
    if isinstance(p.check, Choices):
        return ", ".join(f"`{o}`" for o in p.options)
    return p.check.describe()


def _flag(p: Parameter) -> str:
    if p.flag is None:
        return ""
    if p.kind is bool:
        return f"`{p.flag}` / `--no-{p.flag[2:]}`"
    if p.kind is tuple:
        return f"`{p.flag}` / `--auto-k`"
    return f"`{p.flag}`"


def render() -> str:
    """The markdown table of every parameter, in the config's field order."""
    lines = ["| parameter | CLI flag | form (group: label) | default | allowed values | meaning |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in PARAMETERS.values():
        form = f"{p.group}: {p.label}" if p.label else ""
        lines.append("| " + " | ".join(_cell(c) for c in (
            f"`{p.name}`", _flag(p), form, f"`{_default(p)}`", _allowed(p), p.help)) + " |")
    return "\n".join(lines) + "\n"


def updated(text: str) -> str:
    """``text`` (the README) with the table between the markers replaced by :func:`render`'s."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block to fill.")
    return text[:start + len(BEGIN)] + "\n" + render() + text[end:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update README.md in place")
    args = ap.parse_args(argv)
    if not args.write:
        print(render(), end="")
        return 0
    text = README.read_text()
    new = updated(text)
    if new != text:
        README.write_text(new)
        print("README.md: parameter table updated")
    else:
        print("README.md: parameter table already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
