"""The house's import structure: no cycles between sodlab's modules, and every module imports
on its own in a fresh interpreter.

The cycle check reads every import statement of every module (at module level or inside a
function: a function-local import that dodges a cycle is still a cycle in the design) and
looks for strongly connected components in the module graph. Importing a submodule runs its
package's ``__init__`` first; that implicit edge is not counted, since a package that imports
its own submodules (the registry pattern) is the intended shape.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sodlab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The sodlab modules that ``name`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()

    def add(mod: str) -> None:
        # "import a.b.c" names a.b.c; the nearest known module is what it executes.
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        if mod and mod != name:
            found.add(mod)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sodlab":
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "sodlab":
                continue
            for alias in node.names:
                # "from pkg import sub" imports the submodule pkg.sub when there is one.
                if f"{mod}.{alias.name}" in known:
                    add(f"{mod}.{alias.name}")
                else:
                    add(mod)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert "sodlab.models" in graph and "sodlab.cli" in graph
    cycles = _cycles(graph)
    detail = []
    for comp in cycles:
        members = set(comp)
        edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a] & members)]
        detail.append("cycle among " + ", ".join(comp) + ":\n    " + "\n    ".join(edges))
    assert not cycles, "\n".join(detail)


def test_every_module_imports_on_its_own(repo_env):
    """Each module imported first, in an interpreter where no other sodlab module is loaded
    yet (torch stays loaded between them, which only saves time)."""
    names = sorted(n for n in _modules() if n != "sodlab.__main__")
    code = (
        "import sys, importlib, traceback\n"
        "import torch\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    for k in [k for k in sys.modules if k == 'sodlab' or k.startswith('sodlab.')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, env=repo_env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
