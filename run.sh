#!/usr/bin/env bash
# The README's first command: from a fresh checkout to a running chat.
#
#   ./run.sh
#
# Creates .venv when it is missing, installs the project with its server and web
# extras, writes .env from .env.example with random PUSH_SECRET and SECRET_KEY
# when they are missing, checks that the ports it needs are free, prints the URL
# to open, and runs the push server and the web app with `honcho start` (see the
# Procfile). Ctrl-C stops both. Stopping the push server alone (to restart it)
# leaves the web app running: the Procfile starts it again. To run one process
# on its own: `.venv/bin/honcho start push` (or `web`).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ]; then
    echo "run.sh: creating .venv"
    if ! python3 -m venv .venv; then
        echo "run.sh: python3 -m venv failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
        exit 1
    fi
fi

# Reinstall only when the project's metadata changed since the last install.
stamp=.venv/.webchat-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "run.sh: installing webchat into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[server,web]'
    touch "$stamp"
fi

random_secret() {
    .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))'
}

if [ ! -f .env ]; then
    cp .env.example .env
    chmod 600 .env
    echo "run.sh: wrote .env (edit it to change ports, database, Redis...)"
fi
# Fill in either secret if it is missing or empty, keeping everything else as it is.
for name in PUSH_SECRET SECRET_KEY; do
    if ! grep -Eq "^${name}=.+" .env; then
        value=$(random_secret)
        if grep -Eq "^${name}=" .env; then
            sed -i.bak "s|^${name}=.*|${name}=${value}|" .env && rm -f .env.bak
        else
            printf '%s=%s\n' "$name" "$value" >> .env
        fi
        echo "run.sh: generated a random ${name} in .env"
    fi
done

# honcho reads .env itself; these are read here to check the ports and print the URL.
setting() {
    local value
    value=$(sed -n "s/^$1=//p" .env | tail -n 1)
    printf '%s' "${value:-$2}"
}
web_host=$(setting WEB_HOST 127.0.0.1)
web_port=$(setting WEB_PORT 8000)

# Every port must be free before anything starts: a busy one is said here, first,
# rather than as a traceback below the "open http://..." line.
if ! .venv/bin/python - \
    "WEB_PORT|the web app|${web_host}|${web_port}" \
    "PUSH_WS_PORT|the push server's WebSocket listener|$(setting PUSH_WS_HOST 127.0.0.1)|$(setting PUSH_WS_PORT 7272)" \
    "PUSH_API_PORT|the push server's internal API|$(setting PUSH_API_HOST 127.0.0.1)|$(setting PUSH_API_PORT 7273)" \
    <<'PY'
import socket
import sys

busy = 0
for spec in sys.argv[1:]:
    name, what, host, port = spec.split("|")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the servers themselves bind: a port in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except (OSError, ValueError) as exc:
        busy += 1
        print(f"run.sh: port {port} on {host} ({name}, {what}) is not free: {exc}.", file=sys.stderr)
if busy:
    print("run.sh: stop what uses it (`ss -ltnp` shows who) or choose another port in .env.", file=sys.stderr)
sys.exit(1 if busy else 0)
PY
then
    exit 1
fi

[ "$web_host" = 0.0.0.0 ] && web_host=127.0.0.1
echo
echo "  webchat: open http://${web_host}:${web_port}/"
echo "  (a second user needs a second browser or a private window: windows of one browser share one login)"
echo "  One process alone: \`honcho start push\` or \`honcho start web\` (in .venv/bin); the push server restarts by itself if stopped."
echo

# The Procfile's commands (push-server, gunicorn) come from the virtualenv.
export PATH="$PWD/.venv/bin:$PATH"
exec honcho start
