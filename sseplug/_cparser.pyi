from collections.abc import Callable
from typing import Any

def bulk(
    text: str,
    pos: int,
    end: int,
    events: list[Any],
    decode: Callable[[str], Any] | tuple[Callable[[str], Any], type[BaseException]] | None,
    last_id: str,
    other: Callable[[str, str], str],
    response_type: type,
    error_type: type,
) -> str | None: ...
def whole_chunks(buffer: bytes, pos: int, out: list[bytes]) -> int: ...
