"""Third-party SSE test server: Flask served by gevent's pywsgi ``WSGIServer``."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from flask import Flask, Response, request  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

PIECE_DELAY = 0.02

# One element per yield. Boundaries are deliberate: piece 2/3 splits the CRLF of
# "data: hello", piece 4/5 splits the two UTF-8 bytes of "é" (b"\xc3\xa9").
CRLF_PIECES: list[bytes] = [
    b": welcome\r\n\r\n",
    b"id: 1\r\nevent: greeting\r\ndata: hello\r",
    b"\ndata: world\r\n\r\n",
    b"id: 2\r\n: a comment inside the block\r\ndata: caf\xc3",
    b"\xa9\r\n\r\n",
    b"id: 3\r\nevent: done\r\ndata: bye\r\n\r\n",
]

app = Flask(__name__)


@app.get("/crlf")
def crlf() -> Response:
    """Stream CRLF-terminated events in awkwardly split pieces, then end."""

    def pieces() -> Iterator[bytes]:
        for index, piece in enumerate(CRLF_PIECES):
            if index:
                time.sleep(PIECE_DELAY)
            yield piece

    return Response(pieces(), mimetype="text/event-stream")


@app.get("/nocontent")
def nocontent() -> Response:
    """Answer 204 No Content with an HTML content type."""
    return Response(b"", status=204, mimetype="text/html")


@app.get("/html")
def html() -> Response:
    """Answer 200 with an HTML page instead of an event stream."""
    return Response("<html>not a stream</html>", status=200, mimetype="text/html")


@app.get("/notfound")
def notfound() -> Response:
    """Answer 404 with an HTML body."""
    return Response("<html>not found</html>", status=404, mimetype="text/html")


@app.get("/needs-accept")
def needs_accept() -> Response:
    """Answer 406 unless the request accepts text/event-stream, else a one-event stream."""
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return Response("<html>not acceptable</html>", status=406, mimetype="text/html")

    def one() -> Iterator[bytes]:
        yield b"id: 1\r\nevent: accepted\r\ndata: ok\r\n\r\n"

    return Response(one(), mimetype="text/event-stream")


def main() -> None:
    """Parse ``--port`` and serve on 127.0.0.1 with gevent."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    WSGIServer(("127.0.0.1", args.port), app).serve_forever()


if __name__ == "__main__":
    main()
