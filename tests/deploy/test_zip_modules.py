"""Every module of ours in deployment.zip is imported by app.py: nothing unused ships.

Everything under chalicelib/ is packaged, so a test fake, a benchmark hook or deploy tooling
put there would run (or at least load) on Lambda. The zip's own modules (app.py and
chalicelib/) are walked from app.py through their ``import`` statements (``ast``, nothing is
imported): a module that app.py's import graph never reaches fails the test.
"""

from __future__ import annotations

import ast
import zipfile
from collections.abc import Mapping
from pathlib import Path

from tests.deploy.conftest import Packager

OWN_PACKAGES = ("chalicelib/",)


def own_sources(zip_path: Path) -> dict[str, str]:
    """Module name -> source of app.py and every chalicelib module in the zip."""
    sources: dict[str, str] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if name.endswith(".py") and (name == "app.py" or name.startswith(OWN_PACKAGES)):
                module = name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                sources[module] = zf.read(name).decode("utf-8")
    return sources


def _imported_names(module: str, source: str, is_package: bool) -> set[str]:
    """Every module name an import statement of ``source`` may load (anywhere in the file,
    function-level imports too), with the packages they load on the way."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def reached_from_app(sources: Mapping[str, str]) -> set[str]:
    """The modules of ``sources`` that importing ``app`` loads."""
    packages = {m.rpartition(".")[0] for m in sources if "." in m}
    seen = {"app"}
    todo = ["app"]
    while todo:
        module = todo.pop()
        for name in _imported_names(module, sources[module], module in packages):
            if name in sources and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def unimported(sources: Mapping[str, str]) -> list[str]:
    return sorted(set(sources) - reached_from_app(sources))


def test_every_module_in_the_zip_is_imported_by_app(packaged: Packager) -> None:
    sources = own_sources(packaged("dev").zip_path)
    assert {"app", "chalicelib", "chalicelib.service", "chalicelib.wiring"} <= set(sources)
    assert unimported(sources) == [], "in deployment.zip but never imported by app.py"


def test_a_module_nobody_imports_is_reported(packaged: Packager) -> None:
    sources = own_sources(packaged("dev").zip_path)
    sources["chalicelib.fakes"] = "from chalicelib.registry import Target\n"
    sources["chalicelib.tools"] = "from . import fakes\n"  # imported, but only by the unused
    assert unimported(sources) == ["chalicelib.fakes", "chalicelib.tools"]


def test_imports_are_followed_in_every_form() -> None:
    sources = {
        "app": "import chalicelib.a\nfrom chalicelib import b\n",
        "chalicelib": "",
        "chalicelib.a": "def f():\n    from .c import thing\n",  # relative, inside a function
        "chalicelib.b": "",
        "chalicelib.c": "thing = 1\n",
        "chalicelib.d": "import chalicelib.a\n",
    }
    assert reached_from_app(sources) == {"app", "chalicelib", *(f"chalicelib.{m}" for m in "abc")}
    assert unimported(sources) == ["chalicelib.d"]
