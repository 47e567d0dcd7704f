"""No import cycle inside minivgg/, late imports included.

Every ``from .x import y``, ``from .. import x`` and ``import minivgg.x`` of every module, at the
top of the file or inside a function, is an arrow from that module to the one it names. A late
import (inside a function) is allowed for a heavy or optional dependency, or to keep a program's
start fast, but never to dodge a cycle: so the arrows of late imports count too, and the graph
of all arrows must have no cycle.
"""
import ast

from conftest import ROOT

PACKAGE = ROOT / "minivgg"


def module_name(path, root):
    """minivgg/stylize/run.py -> 'minivgg.stylize.run'; minivgg/stylize/__init__.py ->
    'minivgg.stylize'. ``root`` is the folder that holds the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path, root):
    """The package a module's relative imports start from: its folder, as a dotted name."""
    return ".".join(path.parent.relative_to(root).parts)


def imported_modules(node, path, root, modules):
    """[(module, line)] that one Import or ImportFrom statement of ``path`` brings in, limited to
    the package's own modules (``modules``). ``from pkg import name`` imports pkg.name when that
    is a module, else it takes a name defined by pkg itself."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = package_of(path, root).split(".")
            base = ".".join(package[:len(package) - (node.level - 1)] + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                 for alias in node.names]
    return [(name, node.lineno) for name in dict.fromkeys(names) if name in modules]


def import_graph(package):
    """{module: [(imported module, 'file:line')]} of every import in every .py under package."""
    root = package.parent
    files = sorted(package.rglob("*.py"))
    modules = {module_name(path, root): path for path in files}
    graph = {name: [] for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, line in imported_modules(node, path, root, modules):
                    if target != name:
                        where = f"{path.relative_to(root).as_posix()}:{line}"
                        graph[name].append((target, where))
    return graph


def find_cycle(graph):
    """One cycle as ['a -> b (file:line)', ...], or [] when the graph has none (depth-first)."""
    state, stack = {}, []                 # state: 1 while on the stack, 2 when finished

    def visit(name):
        state[name] = 1
        for target, where in graph[name]:
            stack.append(f"{name} -> {target} ({where})")
            if state.get(target) == 1:
                start = next(i for i, step in enumerate(stack) if step.startswith(f"{target} ->"))
                return stack[start:]
            if target not in state and (cycle := visit(target)):
                return cycle
            stack.pop()
        state[name] = 2
        return []

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return []


def test_minivgg_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "minivgg.weights_cache" in graph and graph["minivgg.vgg"], "the graph was not read"
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + "; ".join(cycle)


def test_the_check_finds_a_cycle_closed_by_a_late_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub.b import f\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a  # late\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = import_graph(package)
    assert graph["pkg.c"] == [("pkg.a", "pkg/c.py:1")]
    assert find_cycle(graph) == ["pkg.a -> pkg.sub.b (pkg/a.py:1)",
                                 "pkg.sub.b -> pkg.a (pkg/sub/b.py:2)"]
    (package / "d.py").write_text("def g():\n    pass\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..d import g  # late, no cycle\n")
    assert find_cycle(import_graph(package)) == []
