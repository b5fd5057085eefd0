"""``sseplug record URL -o FILE``: keep what a server sends, with arrival times, for a replay.

The file format is ``sseplug.recording``'s; ``sseplug serve --replay FILE`` serves it back.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping

from ..hookspecs import hookimpl
from ..recording import RecordingWriter
from ..route import Route
from .tail import EXIT_INTERRUPTED, UsageError, add_request_options, follow, request_from

__all__ = ["add_record_options", "record"]


def add_record_options(parser: argparse.ArgumentParser) -> None:
    """``sseplug record``'s options: those of the request, the file and when to stop."""
    add_request_options(parser)
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the recording to write")
    parser.add_argument("-n", "--count", type=int, default=None, metavar="N", help="stop after N events")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")


class _ResponseMarks:
    """Writes the ``open`` and ``close`` records of every response (a plugin of the recording client)."""

    def __init__(self, writer: RecordingWriter) -> None:
        self.writer = writer

    @hookimpl
    def sseplug_connection_opened(self, status: int, headers: Mapping[str, str]) -> None:
        """Record the response's status and Content-Type."""
        self.writer.open(time.monotonic(), status, headers.get("content-type", ""))

    @hookimpl
    def sseplug_connection_closed(self, reason: str) -> None:
        """Record why the response ended."""
        self.writer.close(time.monotonic(), reason)


def record(args: argparse.Namespace) -> int:
    """Record until the stream ends cleanly, ``--count`` events, ``--timeout`` or Ctrl-C (which
    ends a recording normally: exit 0); 1 when the stream failed (what came before is kept)."""
    if args.count is not None and args.count < 1:
        raise UsageError("--count: expected a number >= 1")
    try:
        out = open(args.output, "w", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"-o {args.output}: cannot write it ({error.strerror})") from None
    with out:
        writer = RecordingWriter(out, time.monotonic())
        request = request_from(args, on_bytes=lambda chunk: writer.piece(time.monotonic(), chunk))
        status = follow("record", request, Route(), None, count=args.count, timeout=args.timeout,
                        plugins=[("record", _ResponseMarks(writer))])
        size = out.tell()
    print(f"sseplug record: {size} bytes in {args.output}", file=sys.stderr)
    return 0 if status == EXIT_INTERRUPTED else status
