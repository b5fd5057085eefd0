"""A bad ``where`` expression says what is wrong and at which column, in the config (with the
file and the key, as every config error) and for ``sseplug tail --where``
(tests/integration/test_tail.py runs the command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sseplug.errors import ConfigError
from sseplug.models import SSEResponse
from sseplug.run.config import load_config
from sseplug.run.where import compile_where


@pytest.mark.parametrize(
    ("expression", "reason"),
    [("data.x = 1", "Unknown token '=' at column 8"),
     ("data.x == 'a", "Unclosed ' delimiter at column 11"),
     ("data..x", "unexpected '.' at column 6"),
     ("data.x == ] ", "unexpected ']' at column 11"),
     ("data.[", "the expression ends too early at column 7"),  # just past the last character
     ("a ||", "the expression ends too early at column 5")],
)
def test_a_bad_expression_names_the_column(expression: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        compile_where(expression)
    assert str(caught.value) == f"invalid JMESPath expression {expression!r}: {reason}"


def test_an_unknown_function_is_found_before_any_event() -> None:
    with pytest.raises(ValueError, match=r"Unknown function: nofunc\(\)"):
        compile_where("nofunc(data)")


def test_a_good_expression_filters() -> None:
    where = compile_where("data.qty > `0`")
    assert where(SSEResponse("1", "trade", {"qty": 2})) and not where(SSEResponse("2", "trade", '{"qty": 0}'))


def test_the_config_error_names_the_file_the_key_and_the_column(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[[connections]]\nid = "a"\nurl = "http://127.0.0.1:1/s"\n\n'
                    '[[connections]]\nid = "b"\nurl = "http://127.0.0.1:1/s"\nwhere = "data.x = 1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (f"{path}: connections[1].where: invalid JMESPath expression 'data.x = 1': "
                                 "Unknown token '=' at column 8; see https://jmespath.org for the syntax")
