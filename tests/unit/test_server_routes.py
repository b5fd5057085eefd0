"""What the loopback server answers, decided with no socket: scripted paths, replayed recordings,
the demo feeds (``sseplug.server._routes`` and ``_feeds``). The bytes on the wire:
``tests/integration/test_server.py``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pytest

from sseplug.recording import Piece as RecordedPiece
from sseplug.recording import Recording
from sseplug.server import DROP, RecordedRequest, Response
from sseplug.server._routes import Routes


def request(path: str, query: dict[str, str] | None = None, last_event_id: str | None = None) -> RecordedRequest:
    """A GET as the server records it."""
    headers = {} if last_event_id is None else {"last-event-id": last_event_id}
    return RecordedRequest("GET", path, query or {}, headers, b"", time.monotonic())


def ids(body: Iterable[object]) -> list[int]:
    """The ``seq`` of each whole tick event in a feed's body."""
    return [json.loads(piece.split(b"data: ")[1])["seq"] for piece in body
            if isinstance(piece, bytes) and piece.startswith(b"id: ") and piece.endswith(b"\n\n")]


def test_a_scripted_path_answers_in_order_then_repeats_the_last_and_script_starts_over() -> None:
    routes, first, second = Routes(), Response(body=[b"data: 1\n\n"]), Response(503)
    routes.script("/s", (first, second))
    assert [routes.answer(request("/s")) for _ in range(3)] == [(first, first.body), (second, ()), (second, ())]
    routes.script("/s", (second, first))
    assert routes.answer(request("/s"))[0] is second
    with pytest.raises(ValueError, match="at least one Response"):
        routes.script("/s", ())


def test_a_replayed_path_goes_on_after_last_event_id_and_loops_when_asked() -> None:
    recording = Recording([RecordedPiece(0.0, b"id: 1\ndata: a\n\n"), RecordedPiece(0.5, b"id: 2\ndata: b\n\n")],
                          "text/event-stream; charset=utf-8")
    routes = Routes()
    routes.replay("/r", recording, speed=0, loop=False)
    response, body = routes.answer(request("/r"))
    assert response.headers == {"Content-Type": "text/event-stream; charset=utf-8"}
    assert list(body) == [b"id: 1\ndata: a\n\n", b"id: 2\ndata: b\n\n"]
    assert list(routes.answer(request("/r", last_event_id="1"))[1]) == [b"id: 2\ndata: b\n\n"]
    routes.replay("/r", recording, speed=2, loop=True)
    looped = iter(routes.answer(request("/r"))[1])
    first, wait, second, again = (next(looped) for _ in range(4))
    assert (first, wait, second, again) == (b"id: 1\ndata: a\n\n", 0.25, b"id: 2\ndata: b\n\n", b"id: 1\ndata: a\n\n")


def test_a_feed_sends_the_events_after_last_event_id_then_204_when_there_are_none_left() -> None:
    routes = Routes()
    response, body = routes.answer(request("/feed/news", {"count": "3", "interval": "0.1"}))
    pieces = list(body)
    assert response.status == 200 and pieces[:2] == [b"retry: 200\n\n", b": hello\n\n"]
    assert ids(pieces) == [1, 2, 3] and pieces.count(0.1) == 2  # a wait between two events
    assert ids(routes.answer(request("/feed/news", {"count": "3"}, last_event_id="2"))[1]) == [3]
    done, rest = routes.answer(request("/feed/news", {"count": "3"}, last_event_id="3"))
    assert done.status == 204 and list(rest) == []


def test_a_flaky_feed_drops_mid_event_every_k_events() -> None:
    _, body = Routes().answer(request("/flaky/f", {"count": "5", "drop_every": "2", "interval": "0"}))
    pieces = list(body)
    assert ids(pieces) == [1, 2] and pieces[-1] is DROP
    third = b'id: 3\nevent: tick\ndata: {"feed": "f", "seq": 3}\n\n'
    assert pieces[-2] == third[: len(third) // 2]  # half of the next event, then the drop


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [("/feed/x", {"count": "-1"}, 400), ("/flaky/x", {"drop_every": "two"}, 400),
     ("/feed/x", {"interval": "nan"}, 400), ("/feed/", {}, 404), ("/feed/a/b", {}, 404), ("/other", {}, 404)],
    ids=["negative-count", "bad-drop-every", "nan-interval", "no-name", "nested-name", "unknown-path"],
)
def test_a_bad_query_is_a_400_and_an_unknown_path_a_404(path: str, query: dict[str, str], status: int) -> None:
    response, body = Routes().answer(request(path, query))
    assert response.status == status and response.framing == "length" and list(body) == list(response.body)
