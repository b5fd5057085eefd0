"""Print the events of one Server-Sent Events stream: ``python examples/client.py [URL]``.

Try it against sseplug's embedded server (``sseplug serve``, or ``SSEServer(port=8000)``).
Ctrl-C closes the stream cleanly.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # first, before anything imports socket or ssl

import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from sseplug import SSEClient, SSEError, SSERequest  # noqa: E402

DEFAULT_URL = "http://127.0.0.1:8000/feed/demo?count=5"


def on_error(error: BaseException) -> None:
    print(f"stream failed: {error}", file=sys.stderr)


def on_done() -> None:
    print("stream ended", file=sys.stderr)


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else DEFAULT_URL
    request = SSERequest(url, on_error=on_error, on_done=on_done)
    interrupted: list[int] = []
    with SSEClient() as client:  # loads the installed plugins; shuts every stream down on exit
        def stop(signum: int) -> None:  # runs in its own greenlet: closing may block
            interrupted.append(signum)
            client.close()  # the loop below then ends like a finished stream

        handlers = [gevent.signal_handler(signum, stop, signum) for signum in (signal.SIGINT, signal.SIGTERM)]
        try:
            for event in client.connect("demo", request):
                print(f"id={event.id!r} event={event.event!r} data={event.data!r}", flush=True)
        except SSEError:
            return 1  # on_error has reported it
        finally:
            for handler in handlers:
                handler.cancel()
    return 128 + interrupted[0] if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
