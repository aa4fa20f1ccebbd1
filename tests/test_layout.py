"""The house rules that code can check: no import circle in the package; eval/ evaluates and
never reaches the trainer; the trainer names no data kind and no method."""
import ast
from pathlib import Path

import jepalab
from jepalab.data.catalog import SOURCES
from jepalab.methods import METHODS

PACKAGE = Path(jepalab.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module -> the jepalab modules it imports anywhere in its file (functions included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = {t for t in found if t != "jepalab"}  # the package's own __init__
    return graph


def test_no_import_circle():
    graph, state, stack = imports(), {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join(
                    stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_eval_never_reaches_the_trainer():
    graph = imports()
    for name, targets in graph.items():
        if name.startswith("jepalab.eval"):
            assert not targets & {"jepalab.train", "jepalab.build", "jepalab.probe",
                                  "jepalab.bench", "jepalab.quickstart"}, (name, targets)


def test_the_trainer_names_no_data_kind_and_no_method():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    strings = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    kinds = {source.kind for source in SOURCES.values()}
    assert not strings & (kinds | set(SOURCES) | set(METHODS))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"ImageData", "TrajectoryData"}


def test_every_third_party_import_is_a_declared_dependency():
    """What the package imports is what pyproject.toml asks pip for (scipy and PIL were
    imported without being declared)."""
    import re
    import sys

    import tomllib

    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = [d for d in project["dependencies"]] + [
        d for extra in project["optional-dependencies"].values() for d in extra]
    names = {re.split(r"[<>=\[; ]", d)[0].lower().replace("-", "_") for d in declared}
    provides = {"pil": "pillow", "yaml": "pyyaml", "sklearn": "scikit_learn", "av": "av",
                "dm_control": "dm_control", "torch": "torch"}
    imported = set()
    for file in (root / "src" / "jepalab").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "jepalab"}
    missing = {m for m in third_party if provides.get(m.lower(), m.lower()) not in names}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
