"""What the loopback server answers to a request: a scripted path's next response, a replayed
recording, a demo feed, else 404 (in that order)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Final

from ..recording import Recording
from ._feeds import answer_feed
from ._framing import Piece, RecordedRequest, Response

__all__ = ["Routes"]

_NOT_FOUND: Final = Response(
    404, {"Content-Type": "text/html; charset=utf-8"}, (b"<html><body><h1>404 Not Found</h1></body></html>\n",), "length"
)


class Routes:
    """The scripted and replayed paths of one server, and the answer to each request."""

    def __init__(self) -> None:
        self._scripts: dict[str, tuple[Response, ...]] = {}
        self._replays: dict[str, tuple[Recording, float, bool]] = {}
        self._served: Counter[str] = Counter()

    def script(self, path: str, responses: tuple[Response, ...]) -> None:
        """Answer the Nth request to ``path`` (from now on) with ``responses[N]``; the last repeats."""
        if not responses:
            raise ValueError("script() needs at least one Response")
        self._scripts[path] = responses
        self._served[path] = 0

    def replay(self, path: str, recording: Recording, speed: float, loop: bool) -> None:
        """Serve ``recording`` at ``path`` (see ``SSEServer.replay``)."""
        self._replays[path] = (recording, speed, loop)

    def answer(self, request: RecordedRequest) -> tuple[Response, Iterable[Piece]]:
        """The response to ``request`` and the body to write (a replay's body carries its timing)."""
        replay = self._replays.get(request.path)
        if replay is not None:
            recording, speed, loop = replay
            offset = recording.resume_offset(request.headers.get("last-event-id") or "\x00")  # NUL: no id
            return Response(headers={"Content-Type": recording.content_type}), _replayed(recording, offset, speed, loop)
        responses = self._scripts.get(request.path)
        if responses is not None:
            index = self._served[request.path]
            self._served[request.path] += 1
            response = responses[min(index, len(responses) - 1)]
            return response, response.body
        return answer_feed(request) or (_NOT_FOUND, _NOT_FOUND.body)


def _replayed(recording: Recording, offset: int, speed: float, loop: bool) -> Iterator[Piece]:
    yield from recording.timeline(offset, speed)
    while loop and recording.pieces:
        yield from recording.timeline(0, speed)
