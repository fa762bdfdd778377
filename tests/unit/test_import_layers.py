"""Imports flow one way: orchestration → assets → quality / connectors. The sandbox and the
benchmarks sit on top (they may import the platform); nothing in the platform imports them.
Read from the source with `ast`, imports inside functions included.

Installed, the folders are one package, `trueup` (pyproject's package-dir): every import names
`trueup.assets…`, never a bare `assets…`, which would load a second copy of a module from the
working directory (with its own module state) and collide with other distributions' names."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ("orchestration", "assets", "quality", "connectors", "sandbox")


def _relative(module: str) -> str:
    """`trueup.assets.publish` → `assets.publish`: the folder a module lives in."""
    return module.removeprefix("trueup.")

#: top-level package → the top-level packages it must never import
FORBIDDEN = {
    "orchestration": {"sandbox", "bench"},
    "assets": {"sandbox", "bench", "orchestration"},
    "quality": {"sandbox", "bench", "orchestration", "assets"},
    "connectors": {"sandbox", "bench", "orchestration", "assets"},
}

#: imports against the flow that exist today, outside the change that added this test
#: (issue 19): (file, imported module). Each is to be removed by moving what it needs down a layer.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()   # none: every import flows one way


def _imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative ones resolved."""
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]   # a module's, or __init__'s, package
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, _relative(alias.name)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = _relative(node.module or "")
            found.append((node.lineno, module))
    return found


def test_the_platform_imports_only_downwards():
    violations = []
    for top, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line, module in _imported_modules(path):
                if module.split(".")[0] in forbidden and (rel, module) not in KNOWN_EXCEPTIONS:
                    violations.append(f"{rel}:{line} imports {module}")
    assert violations == [], "imports against the flow:\n" + "\n".join(violations)


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The checker itself: a lazy import in a function body and relative imports all count."""
    module = tmp_path / "assets" / "sub" / "mod.py"
    module.parent.mkdir(parents=True)
    module.write_text("from . import sibling\nfrom ..other import thing\n\n"
                      "def later():\n    import trueup.sandbox.control\n    from trueup.orchestration.config import Settings\n")
    assert [m for _, m in _imported_modules(module, tmp_path)] == [
        "assets.sub", "assets.other", "sandbox.control", "orchestration.config"]


def _unit(module: str) -> str:
    """The unit a cycle is judged at: a subpackage (assets.publish, quality.contracts, …) or a
    top-level module of a package; orchestration counts as one unit."""
    parts = module.split(".")
    return parts[0] if parts[0] == "orchestration" else ".".join(parts[:2])


def test_no_import_cycles_between_subpackages():
    """Imports only for type checking are left out (they never run)."""
    graph: dict[str, set[str]] = {}
    for pkg in ("orchestration", "assets", "quality", "connectors", "sandbox"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            src = _unit(".".join(p for p in rel.parts if p != "__init__"))
            tree = ast.parse(path.read_text())
            typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                           and ast.unparse(node.test).endswith("TYPE_CHECKING") for n in ast.walk(node)}
            for node in ast.walk(tree):
                if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                if isinstance(node, ast.ImportFrom):
                    if node.level:   # relative: from the file's package, `level` steps up
                        package = list(rel.parts[:-1])[: len(rel.parts) - node.level]
                        names = [".".join([*package, node.module] if node.module else package)]
                    else:
                        names = [_relative(node.module or "")]
                else:
                    names = [_relative(a.name) for a in node.names]
                for name in names:
                    if name.split(".")[0] in ("orchestration", "assets", "quality", "connectors", "sandbox"):
                        dst = _unit(name)
                        if dst != src:
                            graph.setdefault(src, set()).add(dst)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted((a, b) for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert cycles == [], f"import cycles through: {cycles}"


def _python_files():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not ({".venv", ".git", "target"} & set(parts)):
            yield path


def test_every_import_of_the_platform_uses_its_installed_name():
    """A bare `import assets…` works from the repository root (it is on sys.path) and would load
    the module a second time beside `trueup.assets…`; anywhere else it finds someone else's."""
    bare = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bare += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in PLATFORM]
    assert bare == [], "imports without the trueup. prefix:\n" + "\n".join(bare)


def test_the_installed_package_list_covers_every_folder():
    """pyproject names each package (setuptools cannot prefix a `find`); a new subpackage left
    out of the list would be missing from a wheel while working in the editable install."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"trueup." + ".".join(init.parent.relative_to(ROOT).parts)
               for top in PLATFORM for init in (ROOT / top).rglob("__init__.py")}
    assert set(config["packages"]) == folders
    assert config["package-dir"] == {f"trueup.{top}": top for top in PLATFORM}
