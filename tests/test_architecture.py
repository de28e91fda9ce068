"""The house rules of docs/architecture.md: imports run one way, down the layers, and no module imports
itself back through others. Every import counts, function-local ones included (a local import that
hides a circle is still a circle); only `if TYPE_CHECKING:` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lion_core", "tasks", "flows", "lion_cli")

# Layer of a module: the longest prefix that names one.
LAYERS = {
    "lion_core.config": "vocabulary",
    "lion_core.records": "vocabulary",
    "lion_core.chat": "vocabulary",
    "lion_core.prompts": "vocabulary",
    "lion_core.data": "vocabulary",
    "lion_core.interrupt": "vocabulary",
    "lion_core.student": "student",
    "lion_core.run": "run",
    "lion_core.api": "api",
    "lion_core.method": "method",
    "lion_core.evaluation": "evaluation",
    "lion_core.world": "world",
    "tasks": "tasks",
    "flows": "flows",
    "lion_cli": "cli",
}
CORE = {"vocabulary", "student", "run", "api", "method", "evaluation", "world"}
# What each layer may import (itself included). The offline world is beside the method: nothing in
# lion_core but the world imports it; the layers above lion_core may use all of it.
ALLOWED = {
    "vocabulary": {"vocabulary"},
    "student": {"vocabulary", "student"},
    "run": {"vocabulary", "student", "run"},
    "api": {"vocabulary", "run", "api"},
    "method": {"vocabulary", "student", "run", "api", "method"},
    "evaluation": {"vocabulary", "student", "run", "api", "method", "evaluation"},
    "world": {"vocabulary", "student", "api", "world"},
    "tasks": CORE | {"tasks"},
    "flows": CORE | {"tasks", "flows"},
    "cli": CORE | {"tasks", "flows", "cli"},
}
# Third-party packages a layer must not import.
FORBIDDEN = {layer: {"prefect"} for layer in CORE}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    found = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(found, key=len)] if found else None


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import that can run, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = {id(n) for node in ast.walk(tree) if _type_checking_only(node) for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: the module `pkg.name` when it is one, else `pkg` (see `resolve`)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def modules(root: Path) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module an imported name refers to (a module, or the module holding the symbol)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def violations(root: Path) -> list[str]:
    """Every import against ALLOWED or FORBIDDEN, as 'file:line: a (layer) imports b (layer)'."""
    known, out = modules(root), []
    for module, path in known.items():
        layer = layer_of(module)
        for line, name in imports_of(path, module):
            top = name.split(".")[0]
            where = f"{path.relative_to(root)}:{line}"
            if layer in FORBIDDEN and top in FORBIDDEN[layer]:
                out.append(f"{where}: {module} ({layer}) imports {top}, which its layer must not")
            target = resolve(name, known)
            target_layer = layer_of(target) if target else None
            if target_layer is not None and layer is not None and target_layer not in ALLOWED[layer]:
                out.append(f"{where}: {module} ({layer}) imports {target} ({target_layer})")
    return sorted(set(out))


def circles(root: Path) -> list[list[str]]:
    """The import circles among the project's modules (each once, as a path from a module back to it)."""
    known = modules(root)
    graph = {
        m: sorted({t for _, n in imports_of(p, m) if (t := resolve(n, known)) and t != m and t in known})
        for m, p in known.items()
    }
    # a package's __init__ is imported on the way to its modules: not an edge of its own
    graph = {m: [t for t in targets if not m.startswith(t + ".")] for m, targets in graph.items()}
    found, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state[target] == 1:
                found.append([*path[path.index(target) :], target])
            elif state[target] == 0:
                visit(target, [*path, target])
        state[node] = 2

    for node in graph:
        if state[node] == 0:
            visit(node, [node])
    return found


def test_imports_run_down_the_layers() -> None:
    assert violations(ROOT) == [], "imports against the layers of docs/architecture.md"


def test_no_import_circles() -> None:
    assert circles(ROOT) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules(ROOT) if layer_of(m) is None and m not in PACKAGES] == []


def write(root: Path, module: str, text: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(root).parents:
        if parent != Path("."):
            (root / parent / "__init__.py").touch()
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "text", "expected"),
    [
        ("lion_core.method.loop", "from flows.iteration import x\n", "imports flows.iteration (flows)"),
        ("lion_core.api.client", "from lion_core.method import referee\n", "(api) imports lion_core.method"),
        ("lion_core.records", "import lion_core.student.train\n", "imports lion_core.student.train"),
        ("lion_core.method.loop", "def f():\n    from lion_core.world import x\n", "(world)"),
        ("lion_core.run.report", "import prefect\n", "imports prefect"),
    ],
)
def test_an_upward_import_is_named_with_its_file_and_line(
    tmp_path: Path, module: str, text: str, expected: str
) -> None:
    write(tmp_path, module, text)
    for other in (
        "flows.iteration",
        "lion_core.method.referee",
        "lion_core.student.train",
        "lion_core.world.x",
    ):
        write(tmp_path, other, "")
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0] and found[0].startswith(module.replace(".", "/"))


def test_a_circle_hidden_in_a_function_is_found_and_a_type_checking_import_is_not(tmp_path: Path) -> None:
    write(tmp_path, "lion_core.method.a", "from lion_core.method.b import x\n")
    write(tmp_path, "lion_core.method.b", "def f():\n    from lion_core.method.a import y\n")
    assert circles(tmp_path) == [["lion_core.method.a", "lion_core.method.b", "lion_core.method.a"]]
    write(
        tmp_path,
        "lion_core.method.b",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lion_core.method.a\n",
    )
    assert circles(tmp_path) == []
