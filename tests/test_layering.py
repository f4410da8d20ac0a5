"""The layers of docs/ARCHITECTURE.md hold: nothing below imports anything above it.

hercules_core (algorithm) <- model_registry (builds models by id) <- hercules_run (the run pipeline
and the CLI) <- the web app (app.py, callbacks/, pages/). The one allowed exception is the entry
script ``hercules_core/__main__.py``, which hands ``python -m hercules_core`` over to the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# each project module or package and the layer it belongs to (higher imports lower, never back)
LAYER = {"hercules_core": 0, "model_registry": 1, "hercules_run": 2, "callbacks": 3, "pages": 3, "app": 4}
ENTRY_SHIM = ROOT / "hercules_core" / "__main__.py"


def project_modules() -> set[str]:
    """Every top-level module or package of the repository (what a layer could wrongly import)."""
    names = {p.stem for p in ROOT.glob("*.py")}
    names |= {p.parent.name for p in ROOT.glob("*/*.py") if not p.parent.name.startswith(".")}
    return names


def imported_tops(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``, including imports inside
    functions and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value.split(".")[0]))
    return out


def files_of(top: str) -> list[Path]:
    return [ROOT / f"{top}.py"] if (ROOT / f"{top}.py").exists() else sorted((ROOT / top).rglob("*.py"))


def test_hercules_core_imports_nothing_outside_itself():
    local = project_modules() - {"hercules_core"}
    assert {"model_registry", "hercules_run", "callbacks", "app"} <= local  # the check can see the layers
    bad = [f"{p.relative_to(ROOT)}:{line} imports {top}" for p in files_of("hercules_core") if p != ENTRY_SHIM
           for line, top in imported_tops(p) if top in local]
    assert not bad, "hercules_core must not import the layers above it:\n" + "\n".join(bad)


def test_the_entry_shim_is_the_one_documented_upward_hop():
    tops = {top for _, top in imported_tops(ENTRY_SHIM)} & project_modules()
    assert tops == {"hercules_run"}


def test_no_layer_imports_a_layer_above_it():
    bad = []
    for top, layer in LAYER.items():
        for p in files_of(top):
            if p == ENTRY_SHIM:
                continue
            for line, imported in imported_tops(p):
                if LAYER.get(imported, -1) > layer:
                    bad.append(f"{p.relative_to(ROOT)}:{line} imports {imported}")
    assert not bad, "\n".join(bad)


def test_the_cli_lives_in_the_application_layer():
    """``python -m hercules_core`` is documented; the CLI module itself is ``hercules_run.cli``."""
    import hercules_run.cli

    assert not (ROOT / "hercules_core" / "cli.py").exists()
    assert Path(hercules_run.cli.__file__).resolve() == ROOT / "hercules_run" / "cli.py"


def test_the_checker_catches_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n\ndef f():\n    import model_registry as r\n    from hercules_run.cli import main\n"
                     "    importlib.import_module('callbacks.job')\n")
    assert [top for _, top in imported_tops(probe)] == ["os", "model_registry", "hercules_run", "callbacks"]
