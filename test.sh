#!/usr/bin/env bash
# The README's second command: set everything up on a fresh machine and run every test.
#
#   ./test.sh            all tests (extra arguments go to pytest, e.g. ./test.sh -k leave)
#
# What the tests need and this installs when it is missing:
#   - redis-server: the suite starts and stops its own, on a free port (Debian package)
#   - redis-sentinel: the failover tests start a master, a replica and a sentinel (Debian package)
#   - chromium: the browser tests drive Debian's /usr/bin/chromium through Playwright
#     (Playwright's own browser download is not used)
#   - a virtualenv in .venv with the project and its test extras
# PostgreSQL tests use DATABASE_URL_TEST (default postgresql://127.0.0.1:5432/test) and
# are skipped, saying so, when no server answers there.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all,bench]'

# The code is typed (push_*, web_app); a type error fails the run like a failing test.
.venv/bin/mypy
# Lint and formatting (rules and the not-yet-formatted files: pyproject.toml).
.venv/bin/ruff check .
.venv/bin/ruff format --check .

# Two workers, a test file each at a time (module fixtures stay shared): see setup.cfg.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
