"""The package's import graph has no circle. Every module-level import between prune_ray's
modules is an edge (`if TYPE_CHECKING:` imports included: a type the module names is a
dependency too; imports inside functions are left out, they run later). A module's parent package
runs before it, so importing `a.b` is an edge to `a` and to `a.b`."""

import ast
import pathlib

import prune_ray

PACKAGE = pathlib.Path(prune_ray.__file__).parent


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("prune_ray", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        found[name] = path
    return found


def module_level(tree: ast.Module):
    """Import statements outside functions and classes (inside if/try blocks too)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            stack += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                      *(s for handler in getattr(node, "handlers", []) for s in handler.body)]


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in module_level(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
            continue
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
        targets.add(module)
        targets |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import schedules`
    edges = set()
    for target in targets:
        parts = target.split(".")
        edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & known  # its parents run first
    return edges - {name} - {p for p in edges if name.startswith(p + ".")}  # a module's own parents: not a circle


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_finds_the_imports():
    edges = graph()
    assert "prune_ray.plan" in edges["prune_ray.trial"]
    assert "prune_ray.plan.budget" in edges["prune_ray.plan.densities"]
    assert "prune_ray.plan.schedules" in edges["prune_ray.plan"]  # `from . import schedules`


def test_the_check_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_circle():
    assert cycle(graph()) is None
