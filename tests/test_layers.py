"""The import structure of fsq_repro (docs/layout.md): dependencies point down the layers, no module imports in a
cycle, and no module below ``pipeline/`` reads a Hydra config. Function-local imports count. Each checker is also
run on a small package written here, with a violation planted, to show that it can fail."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fsq_repro"

# A unit (top-level module or package of fsq_repro) may import only from strictly lower layers. A new unit must be
# placed here (and in docs/layout.md).
LAYERS = [
    {"__init__", "errors", "hardware", "atomic", "viz"},  # leaves
    {"quantizers", "data", "generation", "losses"},  # pure torch / numpy building blocks
    {"nets", "metrics", "extractors"},  # networks; metrics on features; the networks that make features
    {"tasks"},  # UViM's dense tasks
    {"artifacts"},  # the exported model files (the Stage I -> Stage II handoff)
    {"evaluation", "lit"},  # evaluation on objects; Lightning modules on objects
    {"pipeline"},  # the only readers of the config
]
CONFIG_READERS = {"pipeline"}  # the units that may import omegaconf / hydra


def _imports(path: Path, package: str) -> set[str]:
    """Dotted ``<package>.…`` modules imported anywhere in ``path`` (function-local imports included); a ``from
    <package>.x import y`` counts as ``<package>.x.y`` when that is a module, else ``<package>.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
    return found


def _modules(root: Path) -> dict[str, Path]:
    """Dotted name → file of every module of the package at ``root``."""
    out = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(root: Path, layers: list[set[str]]) -> list[str]:
    layer = {unit: i for i, units in enumerate(layers) for unit in units}
    modules = _modules(root)
    unplaced = {_unit(m) for m in modules} - set(layer)
    found = [f"place {sorted(unplaced)} in LAYERS (tests/test_layers.py, docs/layout.md)"] if unplaced else []
    for name, path in sorted(modules.items()):
        for target in sorted({_unit(t) for t in _imports(path, root.name) if t in modules} - {_unit(name)}):
            if layer.get(target, -1) >= layer.get(_unit(name), -1):
                found.append(f"{name} (layer {layer.get(_unit(name))}) imports {target} (layer {layer.get(target)})")
    return found


def import_cycles(root: Path) -> list[list[str]]:
    """Every cycle of the module graph (a depth-first search; each cycle reported once per entry point)."""
    modules = _modules(root)
    graph = {m: sorted(t for t in _imports(p, root.name) if t in modules and t != m) for m, p in modules.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def config_readers(root: Path, allowed: set[str]) -> list[str]:
    """Modules outside ``allowed`` units that import omegaconf or hydra, or name ``DictConfig``."""
    found = []
    for name, path in sorted(_modules(root).items()):
        if _unit(name) in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if imported & {"omegaconf", "hydra"} or "DictConfig" in text:
            found.append(name)
    return found


def test_imports_point_down_the_layers() -> None:
    violations = layer_violations(PACKAGE, LAYERS)
    assert violations == [], "\n".join(violations)


def test_no_import_cycle_between_modules() -> None:
    cycles = import_cycles(PACKAGE)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_only_the_pipeline_reads_a_config() -> None:
    assert config_readers(PACKAGE, CONFIG_READERS) == []


def _toy_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "toy"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


TOY_LAYERS = [{"__init__"}, {"low"}, {"high"}]


def test_the_layer_check_catches_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    clean = _toy_package(tmp_path / "a", {"low/__init__.py": "", "low/x.py": "", "high.py": "from toy.low import x\n"})
    assert layer_violations(clean, TOY_LAYERS) == []
    upward = _toy_package(tmp_path / "b", {"low/__init__.py": "", "high.py": "",
                                           "low/x.py": "def f():\n    from toy import high\n"})  # fmt: skip
    assert layer_violations(upward, TOY_LAYERS) == ["toy.low.x (layer 1) imports high (layer 2)"]
    unplaced = _toy_package(tmp_path / "c", {"low/__init__.py": "", "high.py": "", "new.py": ""})
    assert layer_violations(unplaced, TOY_LAYERS) == ["place ['new'] in LAYERS (tests/test_layers.py, docs/layout.md)"]


def test_the_cycle_check_finds_a_cycle_hidden_in_function_local_imports(tmp_path: Path) -> None:
    acyclic = _toy_package(tmp_path / "a", {"a.py": "from toy import b\n", "b.py": "import toy.c\n", "c.py": ""})
    assert import_cycles(acyclic) == []
    cyclic = _toy_package(tmp_path / "b", {"a.py": "from toy import b\n", "b.py": "import toy.c\n",
                                           "c.py": "def f():\n    from toy.a import g\n"})  # fmt: skip
    assert import_cycles(cyclic) == [["toy.a", "toy.b", "toy.c", "toy.a"]]


def test_the_config_check_flags_omegaconf_below_the_pipeline(tmp_path: Path) -> None:
    root = _toy_package(tmp_path, {"pipeline.py": "from omegaconf import DictConfig\n",
                                   "low.py": "def f(cfg):\n    import hydra\n", "ok.py": "x = 1\n"})  # fmt: skip
    assert config_readers(root, {"pipeline"}) == ["toy.low"]
