"""The API reference (docs/build_api.py, pdoc): a page per public module naming all of its ``__all__``."""

from __future__ import annotations

import importlib
import importlib.util
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = load_builder()


@pytest.fixture(scope="module")
def api_pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    return out, builder.build(out)


def test_every_public_module_has_a_page_naming_each_public_name(api_pages):
    out, pages = api_pages
    modules = builder.public_modules(builder.PACKAGES)
    assert {"explain", "explain.api", "explain.predictors", "explain.report", "deploy.client", "serving.contract",
            "clearsight.cli"} <= set(modules)
    assert not [name for name in modules if name.endswith("__main__")]
    assert sorted(pages) == sorted(out / f"{name.replace('.', '/')}.html" for name in modules)
    for name in modules:
        module = importlib.import_module(name)
        page = (out / f"{name.replace('.', '/')}.html").read_text(encoding="utf-8")
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public)
            if isinstance(value, types.ModuleType):  # a submodule: linked
                assert f'href="{name.rpartition(".")[2] if "." in name else name}/{public}.html"' in page \
                    or f'>{public}</a>' in page, f"{name}: no link to submodule {public}"
            else:
                assert f'id="{public}"' in page, f"{name}'s page does not document {public}"
    index = (out / "index.html").read_text(encoding="utf-8")
    for package in builder.PACKAGES:
        assert f'href="{package}.html"' in index


def test_the_explainer_page_shows_its_docstring(api_pages):
    out, _ = api_pages
    page = (out / "explain" / "api.html").read_text(encoding="utf-8")
    assert 'id="Explainer"' in page and "sagemaker.predictor.Predictor" in page
    assert 'href="#Explainer.run"' in page or 'id="Explainer.run"' in page


@pytest.mark.parametrize("name, source, problem", [
    ("broken_reference", '"""See ``explain.api.NoSuchExplainer``."""\n',
     "broken_reference: the docstring names explain.api.NoSuchExplainer, which does not exist"),
    ("broken_function", '"""Fine."""\n\ndef helper():\n    """Calls `explain.nowhere.function()`."""\n',
     "broken_function.helper: the docstring names explain.nowhere.function, which does not exist"),
    ("broken_import", '"""Fine."""\nimport no_such_dependency_anywhere\n',
     "cannot import broken_import: "),
])
def test_the_build_fails_naming_a_broken_reference_or_import(tmp_path, monkeypatch, name, source, problem):
    package = tmp_path / name  # one name per case: pdoc caches modules by name
    package.mkdir()
    (package / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(builder.DocsError) as raised:
        builder.build(tmp_path / "out", (name,), root=tmp_path)
    assert problem in str(raised.value)
    assert not (tmp_path / "out").exists()  # nothing half-built
