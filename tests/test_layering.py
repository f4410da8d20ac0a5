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
LAYER = {"hercules_core": 0, "model_registry": 1, "hercules_run": 2, "callbacks": 3, "pages": 3, "app": 4,
         "serve": 4}
ENTRY_SHIM = ROOT / "hercules_core" / "__main__.py"
# Around the product: devkit/ (servers, clients and data generators for tests, benchmarks and scripts)
# may import the product; bench/ and scripts/ may import the product and devkit; only tests/ imports
# tests/. The product imports none of them (its layers may import only lower layers).
TOOLS = {"devkit": set(LAYER), "bench": set(LAYER) | {"devkit"}, "scripts": set(LAYER) | {"devkit"}}


def project_modules(root: Path = ROOT) -> set[str]:
    """Every top-level module or package of the repository (what a layer could wrongly import)."""
    names = {p.stem for p in root.glob("*.py")}
    names |= {p.parent.name for p in root.glob("*/*.py") if not p.parent.name.startswith(".")}
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


def files_of(top: str, root: Path = ROOT) -> list[Path]:
    return [root / f"{top}.py"] if (root / f"{top}.py").exists() else sorted((root / top).rglob("*.py"))


def wrong_imports(root: Path = ROOT, tops=(*LAYER, *TOOLS)) -> list[str]:
    """``file:line imports X`` for every import that crosses the product/tooling rules above: a product
    layer importing anything of the repository but its own or a lower layer (the entry shim aside), a
    tool importing anything of the repository it is not allowed to."""
    local = project_modules(root)
    bad = []
    may = {**{t: {u for u, lv in LAYER.items() if lv <= layer} for t, layer in LAYER.items()},
           **{t: allowed | {t} for t, allowed in TOOLS.items()}}
    for top in tops:
        allowed = may[top]
        for p in files_of(top, root):
            if p == root / ENTRY_SHIM.relative_to(ROOT):
                continue
            bad += [f"{p.relative_to(root)}:{line} imports {imported}" for line, imported in imported_tops(p)
                    if imported in local and imported not in allowed]
    return bad


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
    """Nor anything of the repository that is not a product layer (devkit, tests, bench, scripts)."""
    bad = wrong_imports(tops=LAYER)
    assert not bad, "\n".join(bad)


def test_devkit_bench_and_scripts_import_only_the_product_and_devkit():
    assert set(TOOLS) | {"tests"} <= project_modules()  # the check can see the tools
    assert all(files_of(top) for top in TOOLS)
    bad = wrong_imports(tops=TOOLS)
    assert not bad, "\n".join(bad)


def test_the_tooling_check_catches_a_wrong_import(tmp_path):
    for rel, source in {"hercules_core/a.py": "", "app.py": "def f():\n    from devkit import stub\n",
                        "callbacks/c.py": "import hercules_run\n", "hercules_run/r.py": "from callbacks import c\n",
                        "devkit/stub.py": "import app\nfrom bench import b\n",
                        "bench/b.py": "import devkit.stub\nimport hercules_core\nfrom tests.helpers import x\n",
                        "scripts/s.py": "import importlib\nimportlib.import_module('tests.helpers')\n",
                        "tests/helpers.py": "import devkit, bench, scripts\n"}.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(source)
    assert sorted(wrong_imports(tmp_path)) == ["app.py:2 imports devkit", "bench/b.py:3 imports tests",
                                               "devkit/stub.py:2 imports bench", "hercules_run/r.py:1 imports callbacks",
                                               "scripts/s.py:2 imports tests"]


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
