"""The package's layers (docs/architecture.md) hold, and the one ``Registry`` behaves as documented."""

import sys
import types
from pathlib import Path

import pytest

from synthiqa.errors import ConfigError, DatasetError
from synthiqa.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept(capsys):
    """distortions < datasets < models < benchmarks < reports < cli, and no cycle between siblings (the
    contracts of pyproject.toml, checked on the synthiqa this test imports)."""
    from importlinter import configuration
    from importlinter.application.use_cases import lint_imports

    configuration.configure()
    kept = lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, report[-6000:]
    assert "2 kept, 0 broken" in report


def test_registry_register_get_list_and_suggestions():
    reg: Registry[int] = Registry("widget", error=DatasetError)
    reg.register("alpha", 1, aliases=("a",))

    @reg.register("beta")
    def beta() -> int:
        return 2

    assert reg.get("alpha") == 1 and reg.get("a") == 1 and reg.get("beta") is beta
    assert reg.list() == ["alpha", "beta"] and "a" in reg and len(reg) == 2
    with pytest.raises(DatasetError, match=r"unknown widget 'alpah' \(did you mean alpha\?\); choose one of: "
                                           r"alpha, beta"):
        reg.get("alpah")
    assert reg.unregister("a") == 1 and "a" not in reg and reg.list() == ["beta"]


def test_registry_discovers_builtins_lazily(monkeypatch, tmp_path):
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text("from plugreg import REG\nREG.register('one', 1)\n")
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    reg: Registry[int] = Registry("plugin", builtin="plugpkg")
    monkeypatch.setitem(sys.modules, "plugreg", types.SimpleNamespace(REG=reg))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugpkg.one" not in sys.modules
    assert reg.list() == ["one"] and "plugpkg.one" in sys.modules
    with pytest.raises(ConfigError, match="unknown plugin 'two'"):
        reg.get("two")


def test_methods_are_the_trainable_model_cards():
    from synthiqa.models.registry import get_method, list_methods, list_models

    assert set(list_methods()) == {"arniqa", "ceniqa", "sind", "trcnn"} <= set(list_models())
    assert get_method("sind").config is get_method("trcnn").config
    with pytest.raises(ConfigError, match=r"unknown method 'cenqa' \(did you mean ceniqa"):
        get_method("cenqa")
    with pytest.raises(ConfigError, match="not a trainable method 'niqe'"):
        get_method("niqe")
