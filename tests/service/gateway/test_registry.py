"""The insurers file: valid files load, every kind of mistake is named with file, insurer and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.gateway import InsurerConfig, InsurerRegistry, InsurersFileError, UnknownInsurer, load_insurers


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "insurers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_the_contract_example(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[insurers.acme]
base_url = "http://127.0.0.1:9001"
timeout_s = 2.0          # client timeout for one synchronous call
adapter = "generic-json" # the default adapter; others may be added

[insurers.pingan]
base_url = "https://api.example.cn/gw/v2/"
""",
    )
    registry = load_insurers(path)
    assert registry.names() == ["acme", "pingan"]
    assert "acme" in registry and "nobody" not in registry
    assert len(registry) == 2
    assert registry.get("acme") == InsurerConfig("acme", "http://127.0.0.1:9001", 2.0, "generic-json", None)
    pingan = registry["pingan"]
    assert pingan.base_url == "https://api.example.cn/gw/v2"  # trailing slash dropped
    assert (pingan.timeout_s, pingan.adapter) == (5.0, "generic-json")


def test_connect_timeout_defaults_to_at_most_two_seconds() -> None:
    assert InsurerConfig("a", "http://x", timeout_s=5.0).effective_connect_timeout_s == 2.0
    assert InsurerConfig("a", "http://x", timeout_s=0.5).effective_connect_timeout_s == 0.5
    assert InsurerConfig("a", "http://x", timeout_s=5.0, connect_timeout_s=3.0).effective_connect_timeout_s == 3.0


def test_integer_timeout_is_accepted(tmp_path: Path) -> None:
    registry = load_insurers(write(tmp_path, '[insurers.a]\nbase_url = "http://h"\ntimeout_s = 3\n'))
    assert registry.get("a").timeout_s == 3.0


def test_unknown_insurer_names_it() -> None:
    registry = InsurerRegistry.from_mapping({"acme": {"base_url": "http://h"}})
    with pytest.raises(UnknownInsurer, match="'nobody'") as info:
        registry.get("nobody")
    assert info.value.name == "nobody"
    with pytest.raises(UnknownInsurer):
        registry["nobody"]


def test_from_mapping_accepts_configs_and_validates_them() -> None:
    registry = InsurerRegistry.from_mapping({"acme": InsurerConfig("acme", "http://h/", 1.0)})
    assert registry.get("acme").base_url == "http://h"
    with pytest.raises(InsurersFileError, match="named 'other'"):
        InsurerRegistry.from_mapping({"acme": InsurerConfig("other", "http://h")})
    with pytest.raises(InsurersFileError, match="timeout_s"):
        InsurerRegistry.from_mapping({"acme": InsurerConfig("acme", "http://h", timeout_s=0)})


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[insurers.acme]\ntimeout_s = 2.0\n", ["'acme'", "missing field 'base_url'"]),
        ('[insurers.acme]\nbase_url = "ftp://h"\n', ["'acme'", "'base_url'", "http(s) URL"]),
        ('[insurers.acme]\nbase_url = "127.0.0.1:9001"\n', ["'acme'", "'base_url'"]),
        ("[insurers.acme]\nbase_url = 9001\n", ["'acme'", "'base_url'", "string"]),
        ('[insurers.acme]\nbase_url = "http://h?x=1"\n', ["'acme'", "'base_url'", "query"]),
        ('[insurers.acme]\nbase_url = "http://h"\ntimeout_s = 0\n', ["'acme'", "'timeout_s'", "> 0"]),
        ('[insurers.acme]\nbase_url = "http://h"\ntimeout_s = -1.5\n', ["'acme'", "'timeout_s'"]),
        ('[insurers.acme]\nbase_url = "http://h"\ntimeout_s = "2"\n', ["'acme'", "'timeout_s'", "number"]),
        ('[insurers.acme]\nbase_url = "http://h"\ntimeout_s = true\n', ["'acme'", "'timeout_s'"]),
        ('[insurers.acme]\nbase_url = "http://h"\ntimeout_s = nan\n', ["'acme'", "'timeout_s'"]),
        (
            '[insurers.acme]\nbase_url = "http://h"\nconnect_timeout_s = 0\n',
            ["'acme'", "'connect_timeout_s'"],
        ),
        ('[insurers.acme]\nbase_url = "http://h"\nadapter = "soap"\n', ["'acme'", "'adapter'", "'soap'"]),
        ('[insurers.acme]\nbase_url = "http://h"\ntimeout = 2\n', ["'acme'", "unknown key", "'timeout'"]),
        ('[insurer.acme]\nbase_url = "http://h"\n', ["top-level", "'insurer'"]),
        ("title = 'x'\n", ["top-level"]),
        ("", ["no [insurers.NAME] table"]),
        ('insurers = "acme"\n', ["'insurers' must be a table"]),
        ('[insurers]\nacme = "http://h"\n', ["'acme'", "expected a table"]),
        ("[insurers.acme\n", ["not valid TOML"]),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InsurersFileError) as info:
        load_insurers(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(InsurersFileError, match="not found") as info:
        load_insurers(path)
    assert str(path) in str(info.value)


def test_empty_insurers_table_is_an_empty_registry(tmp_path: Path) -> None:
    assert load_insurers(write(tmp_path, "[insurers]\n")).names() == []


def test_insurers_file_error_is_a_value_error() -> None:
    assert issubclass(InsurersFileError, ValueError)
