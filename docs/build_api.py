"""Build the API reference from the docstrings with pdoc: one HTML page per module, into docs/api/.

Usage: python docs/build_api.py [--out docs/api]   (``make docs``; ``make test`` runs it)

Documents the packages ``serving``, ``deploy``, ``explain`` and ``clearsight`` and every
module under them but ``__main__`` (pdoc shows what a module's ``__all__`` lists). The build fails
(exit 1, each problem named) when a module cannot be imported, when pdoc warns about
anything, or when a docstring names a project object in backticks (``explain.api.Explainer``)
that does not exist. The pages are generated, not committed: docs/api/ is git-ignored.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("serving", "deploy", "explain", "clearsight")
# ``explain.api.Explainer`` or `deploy.client.EndpointClient.predict()` in a docstring
REFERENCE = re.compile(r"`+((?:%s)(?:\.[A-Za-z_]\w*)+)(?:\(\))?`+" % "|".join(PACKAGES))


class DocsError(Exception):
    """The API reference cannot be built; the message lists every problem."""


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module or an attribute chain below one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def public_modules(packages: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """Every module of ``packages`` (folders in ``root``) with no name part starting with '_'."""
    names = []
    for package in packages:
        names.append(package)
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if len(parts) > 1 and not any(part.startswith("_") for part in parts):
                names.append(".".join(parts))
    return sorted(set(names))


def load_lazy_names(packages: tuple[str, ...]) -> None:
    """Bind the names a package's ``__all__`` loads on first use (PEP 562 ``__getattr__``, as
    ``serving`` does to keep mxnet out of plain imports), so that pdoc finds them."""
    for package in packages:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            if name not in vars(module):
                setattr(module, name, getattr(module, name))


def _docstrings(document):
    """(qualified name, docstring) of a pdoc Doc and every member documented under it."""
    yield document.fullname, document.docstring or ""
    for member in getattr(document, "own_members", ()):
        yield from _docstrings(member)


def broken_references(modules: dict) -> list[str]:
    """Docstring references to project objects that do not exist, as 'where: what' lines."""
    problems = []
    for module in modules.values():
        for where, docstring in _docstrings(module):
            for match in REFERENCE.finditer(docstring):
                if not resolves(match.group(1)):
                    problems.append(f"{where}: the docstring names {match.group(1)}, which does not exist")
    return sorted(set(problems))


def build(out_dir: Path, packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> list[Path]:
    """Render one page per module of ``packages`` (folders in ``root``, importable) into
    ``out_dir``, plus index.html and search.js; returns the module pages.

    Raises DocsError listing import failures, pdoc's warnings and broken docstring references.
    """
    try:
        import pdoc
        import pdoc.doc
        import pdoc.render
    except ImportError as error:
        raise DocsError(f"pdoc is not installed ({error}): make install, or pip install -c constraints.txt "
                        "pdoc") from None

    pdoc_dir = Path(pdoc.__file__).parent
    pdoc.render.configure(docformat="restructuredtext", show_source=False, search=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules, problems = {}, []
        for name in public_modules(packages, root):
            try:
                if "." not in name:
                    load_lazy_names((name,))
                modules[name] = pdoc.doc.Module.from_name(name)
            except Exception as error:  # noqa: BLE001 - every import failure is reported
                problems.append(f"cannot import {name}: {type(error).__name__}: {error}")
        pages = {name: pdoc.render.html_module(module, modules) for name, module in modules.items()}
        index = pdoc.render.html_index(modules)
        search = pdoc.render.search_index(modules)
    problems += [f"pdoc: {warning.message}" for warning in caught
                 if Path(warning.filename).resolve().is_relative_to(pdoc_dir)]
    problems += broken_references(modules)
    if problems:
        raise DocsError("the API reference has problems:\n  " + "\n  ".join(problems))
    out_dir = Path(out_dir)
    written = []
    for name, page in pages.items():
        path = out_dir / f"{name.replace('.', '/')}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        written.append(path)
    if index:
        (out_dir / "index.html").write_text(index, encoding="utf-8")
    if search:
        (out_dir / "search.js").write_text(search, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api", help="output folder (default docs/api)")
    arguments = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    try:
        pages = build(arguments.out)
    except DocsError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{len(pages)} module pages in {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
