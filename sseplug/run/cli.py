"""The ``sseplug`` command line: run, check, plugins, demo, serve, tail, record, top.

Importing this module patches nothing and imports neither ``socket`` nor ``ssl`` (a test checks):
``main()``, the entry point of the ``sseplug`` script and of ``python -m sseplug``, applies gevent's
monkey patches before anything else, so the network stack is imported patched. The modules that
need the network (plugins, the runner, ``top``) are imported inside the functions.
"""

import argparse
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from .._malloc import keep_freed_memory
from .numeric_hosts import resolve_numeric_hosts_inline
from .config import Config, load_config
from ..errors import ConfigError, PluginError
from .record import add_record_options
from .tail import UsageError, add_tail_options, tail

__all__ = ["EXIT_CONFIG", "build_parser", "main"]

EXIT_CONFIG = os.EX_CONFIG  # 78
EXIT_USAGE = 2  # as argparse exits

log = logging.getLogger("sseplug.run.cli")


class JsonFormatter(logging.Formatter):
    """One JSON object per log record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON: time, level, logger, message and any exception."""
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sseplug`` command."""
    from .top import add_top_options  # top reads /status with urllib: imports ssl

    parser = argparse.ArgumentParser(prog="sseplug", description="Consume Server-Sent Events streams.")
    parser.add_argument("--version", action="version", version=f"sseplug {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="consume the streams of a config file")
    run.add_argument("config", help="path of the TOML config")
    check = commands.add_parser("check", help="validate a config file and load its plugins, without connecting")
    check.add_argument("config", help="path of the TOML config")
    plugins = commands.add_parser("plugins", help="list the plugins: name, distribution, version, hooks")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fleet = commands.add_parser("fleet", help="the fleet sharing a config through Redis: runners, unowned streams",
                                description="What Redis says about the runners sharing this config "
                                            "([plugins.redis]): live runners, streams held, open, in standby, "
                                            "and streams no live runner holds.")
    fleet.add_argument("config", help="path of the TOML config")
    fleet.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands.add_parser("demo", help="run the runner against the embedded loopback server (ends by itself)")
    tail = commands.add_parser("tail", help="print a stream's events as they arrive",
                               description="Print a stream's events as they arrive; it reconnects as the library does.")
    add_tail_options(tail)
    record = commands.add_parser("record", help="record what a stream sends, with arrival times, to a file",
                                 description="Record what a stream sends, with arrival times, for sseplug serve --replay.")
    add_record_options(record)
    top = commands.add_parser("top", help="a live view of a running runner (its /status)",
                              description="A live view of a running runner, from its http_listen /status.")
    add_top_options(top)
    serve = commands.add_parser("serve", help="run the embedded loopback SSE server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--replay", metavar="FILE", help="serve this recording at / (honours Last-Event-ID)")
    serve.add_argument("--speed", type=float, default=1.0, metavar="X",
                       help="replay X times as fast (0: no waits; default 1)")
    serve.add_argument("--loop", action="store_true", help="replay the recording over and over")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sseplug`` console script and ``python -m sseplug``: applies gevent's
    monkey patches, then runs the command ``argv`` names; returns the exit status."""
    from gevent import monkey

    monkey.patch_all()  # first: before anything imports ssl (importing sseplug or this module does not)
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    resolve_numeric_hosts_inline()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if args.log_format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=args.log_level, handlers=[handler], force=True)
    # urllib3 logs each request line, query included (tokens), at DEBUG; sseplug logs its own
    logging.getLogger("urllib3").setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, PluginError) as error:
        print(f"sseplug: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as error:
        print(f"sseplug {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _load(path: str) -> Config:
    from ..plugins import known_plugin_names

    return load_config(path, known_plugins=known_plugin_names())


def _run(args: argparse.Namespace) -> int:
    from .runner import Runner

    return Runner(_load(args.config)).run()


def _check(args: argparse.Namespace) -> int:
    """Everything ``run`` validates (plugin tables, routes, filters, the metrics endpoint), as a
    dry run: plugins see ``config.dry_run`` and create, open and connect nothing. Every error
    names the file and the key."""
    config = dataclasses.replace(_load(args.config), dry_run=True)
    try:
        if config.runner.http_listen is not None:
            try:
                from . import metrics  # noqa: F401  (what /metrics needs imports)
            except ImportError as error:
                raise ConfigError(f"the HTTP endpoint cannot start: {error}; install what it names "
                                  "(a dependency of sseplug) or remove http_listen", key="runner.http_listen") from error
        from ..plugins import create_plugin_manager
        from .runner import check_routes, inactive_plugins, keep_stdout_only_without_other_sinks, runner_plugins

        pm = runner_plugins(config)
        try:
            try:
                pm.configure(config)  # plugins check their tables
            except (ConfigError, PluginError):
                raise
            except Exception as error:  # not a ConfigError: a plugin's own bug, still this file's check
                name = pm.plugin_that_raised("sseplug_configure", error)
                raise PluginError(f"plugin {name!r} failed to check its settings: {type(error).__name__}: {error}",
                                  plugin=name, hook="sseplug_configure") from error
            keep_stdout_only_without_other_sinks(pm, config)
            check_routes(pm, config)
        finally:
            pm.unconfigure()
        inactive = inactive_plugins(create_plugin_manager(builtins=()), config)
    except (ConfigError, PluginError) as error:
        raise _in_file(error, config) from error
    names = ", ".join(row["name"] for row in pm.describe())
    unused = f"; installed but inactive without a [plugins.NAME] table: {', '.join(inactive)}" if inactive else ""
    print(f"{args.config}: OK, {len(config.connections)} connections; plugins: {names}{unused}")
    return 0


def _in_file(error: ConfigError | PluginError, config: Config) -> ConfigError:
    """``error`` met while checking ``config``, as a ``ConfigError`` naming the file and a key: its
    own, else the plugin's: its ``[plugins.NAME]`` table when checking it failed, its
    ``runner.plugins.modules`` entry, or where to disable it."""
    from .environment import join_key

    if isinstance(error, ConfigError):
        return ConfigError(error.message, key=error.key, path=error.path or str(config.path))
    name, message = error.plugin or "", error.message
    if name in config.plugins and (error.hook == "sseplug_configure" or name not in config.runner.modules):
        key = join_key("plugins", name)
    elif name in config.runner.modules:
        key = f"runner.plugins.modules[{config.runner.modules.index(name)}]"
        message = message.removeprefix(f"{key}: ")
    else:  # an installed plugin that does not load: disabling it is the way out
        key = "runner.plugins.disable" if name else "runner.plugins"
    return ConfigError(message, key=key, path=str(config.path))


def _plugins(args: argparse.Namespace) -> int:
    from ..plugins import BUILTINS, create_plugin_manager

    rows = create_plugin_manager(builtins=BUILTINS).describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<12} {row['distribution']:<20} {row['version']:<10} {', '.join(row['hooks'])}")
    return 0


def _fleet(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if "redis" not in config.plugins:
        raise ConfigError("no [plugins.redis] table: this config runs no fleet", key="plugins.redis",
                          path=str(config.path))
    try:
        fleet = importlib.import_module("sseplug_redis.fleet")  # a plugin's module: not a dependency
    except ImportError:
        raise UsageError("the fleet view comes with the redis plugin, which is not installed: from a checkout, "
                         "`pip install -e plugins/redis`") from None
    view = fleet.fleet_view(config)
    print(json.dumps(view, indent=2) if args.json else fleet.render(view))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def _serve(args: argparse.Namespace) -> int:
    import gevent
    import gevent.event

    from ..recording import Recording, RecordingError
    from ..server import SSEServer

    if args.speed < 0:
        raise UsageError("--speed: expected a number >= 0")
    recording = None
    if args.replay is not None:
        try:
            recording = Recording.load(args.replay)
        except (OSError, RecordingError, UnicodeDecodeError) as error:
            raise UsageError(f"--replay {args.replay}: {error}") from None
    with SSEServer(args.host, args.port) as server:
        paths = "/feed/NAME, /flaky/NAME"
        if recording is not None:
            server.replay("/", recording, speed=args.speed, loop=args.loop)
            paths = f"/ replays {args.replay}, {paths}"
        print(f"serving on {server.url('')} ({paths}); Ctrl-C to stop", file=sys.stderr, flush=True)
        stop = gevent.event.Event()
        handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
        stop.wait()
        for handler in handlers:
            handler.cancel()
    return 0


def _tail(args: argparse.Namespace) -> int:
    return tail(args)


def _top(args: argparse.Namespace) -> int:
    from .top import top

    return top(args)


def _record(args: argparse.Namespace) -> int:
    from .record import record

    return record(args)


COMMANDS = {"run": _run, "check": _check, "plugins": _plugins, "demo": _demo, "serve": _serve, "tail": _tail,
            "record": _record, "top": _top, "fleet": _fleet}
