"""Adapters by name from the entry-point group asyncgate.adapters: the built-ins registered like any
plugin, a name nobody registered failing the load (and the service's startup) with the installed ones,
and a plugin that is broken, not an adapter, or registered twice."""

from __future__ import annotations

import textwrap
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from service.app import create_app
from service.config import Settings
from service.gateway import (
    AdapterError,
    GenericJsonAdapter,
    InsurersFileError,
    installed,
    load_adapter,
    load_insurers,
    plugins,
)
from service.gateway.signed_form import SignedFormAdapter
from service.scoring import ServingModel

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient


def test_the_built_ins_are_registered_as_entry_points_of_asyncgate() -> None:
    eps = installed()
    assert {"generic-json", "signed-form"} <= set(eps)
    assert eps["generic-json"].value == "service.gateway.adapters:GenericJsonAdapter"
    assert eps["generic-json"].dist is not None and eps["generic-json"].dist.name == "asyncgate"
    assert isinstance(load_adapter("generic-json"), GenericJsonAdapter)
    assert isinstance(load_adapter("signed-form"), SignedFormAdapter)
    assert load_adapter("signed-form") is load_adapter("signed-form"), "made once per process"


def test_an_insurer_naming_an_adapter_nobody_registered_fails_the_load(tmp_path: Path) -> None:
    path = tmp_path / "insurers.toml"
    path.write_text('[insurers.acme]\nbase_url = "http://h"\nadapter = "soap-xml"\n')
    with pytest.raises(InsurersFileError) as caught:
        load_insurers(path)
    message = str(caught.value)
    for fragment in (
        str(path),
        "'acme'",
        "'adapter'",
        "no adapter named 'soap-xml' is installed",
        "'generic-json'",
        "'signed-form'",
        "asyncgate.adapters",
    ):
        assert fragment in message


def test_the_service_does_not_start_with_an_unregistered_adapter(tmp_path: Path, serving_model: ServingModel) -> None:
    path = tmp_path / "insurers.toml"
    path.write_text('[insurers.acme]\nbase_url = "http://h"\nadapter = "soap-xml"\n')
    settings = Settings(
        state_dir=tmp_path / "state",
        db_url=f"sqlite:///{tmp_path}/state/asyncgate.db",
        model_dir=tmp_path / "no-models",
        insurers_file=path,
    )
    with pytest.raises(InsurersFileError, match="no adapter named 'soap-xml' is installed; installed: \\["):
        with TestClient(create_app(settings, model=serving_model)):
            pass


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[EntryPoint]:
    """The entry points seen are asyncgate's plus what the test appends; plugin modules live in tmp_path."""
    (tmp_path / "fake_plugin.py").write_text(
        textwrap.dedent(
            """
            class NotAnAdapter:
                def call(self):  # not a coroutine
                    return None

            class Fine:
                async def call(self, transport, insurer, *, order_id, operation, payload): ...
                async def query(self, transport, insurer, *, order_id, operation): ...
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = list(plugins.entry_points(group=plugins.GROUP))
    extra: list[EntryPoint] = []
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*real, *extra])
    return extra


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=plugins.GROUP)


def test_a_plugin_that_cannot_be_imported_is_named_with_its_error(fake_plugins: list[EntryPoint]) -> None:
    fake_plugins.append(ep("broken", "no_such_module_anywhere:Adapter"))
    assert "broken" in installed(), "listed without importing anything"
    with pytest.raises(AdapterError, match=r"adapter .broken. .* could not be loaded: ModuleNotFoundError"):
        load_adapter("broken")
    load_adapter("generic-json")  # a broken plugin nobody names stops nothing


def test_a_plugin_object_without_coroutines_is_refused(fake_plugins: list[EntryPoint]) -> None:
    fake_plugins.append(ep("half", "fake_plugin:NotAnAdapter"))
    with pytest.raises(AdapterError, match=r"'half' .* is not an adapter: it has no coroutine 'call'"):
        load_adapter("half")


def test_a_minimal_plugin_needs_no_options(fake_plugins: list[EntryPoint], tmp_path: Path) -> None:
    fake_plugins.append(ep("fine", "fake_plugin:Fine"))
    path = tmp_path / "insurers.toml"
    path.write_text('[insurers.acme]\nbase_url = "http://h"\nadapter = "fine"\n')
    registry = load_insurers(path)
    assert registry["acme"].adapter == "fine"
    assert type(registry.adapters["fine"]).__name__ == "Fine"
    path.write_text('[insurers.acme]\nbase_url = "http://h"\nadapter = "fine"\nregion = "cn"\n')
    with pytest.raises(InsurersFileError, match="unknown key"):
        load_insurers(path)


def test_one_name_registered_twice_is_an_error(fake_plugins: list[EntryPoint]) -> None:
    fake_plugins.append(ep("generic-json", "fake_plugin:Fine"))
    with pytest.raises(AdapterError, match="'generic-json' is registered twice"):
        load_adapter("generic-json")


def test_the_example_plugin_declares_an_importable_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/asyncgate-adapter-example (installed and tested in CI, .ci/run) names a real adapter class."""
    import tomllib

    root = Path(__file__).resolve().parents[3] / "examples" / "asyncgate-adapter-example"
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    declared = project["project"]["entry-points"][plugins.GROUP]
    assert declared == {"example-bearer": "asyncgate_adapter_example:BearerJsonAdapter"}
    monkeypatch.syspath_prepend(str(root))
    fake = ep("example-bearer", declared["example-bearer"])
    adapter = plugins._made(fake.name, fake.value)
    assert adapter.option_keys == frozenset({"token_env"})  # type: ignore[attr-defined]
