#!/usr/bin/env bash
# The README's first command: from a fresh checkout to a running chat.
#
#   ./run.sh
#
# Creates .venv when it is missing, installs the project with its server and web
# extras, writes .env from .env.example with random PUSH_SECRET and SECRET_KEY
# when they are missing, prints the URL to open, and runs the push server and the
# web app with `honcho start` (see the Procfile). Ctrl-C stops both.
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

# Only to print the URL; honcho reads .env itself.
web_host=$(sed -n 's/^WEB_HOST=//p' .env | tail -n 1)
web_port=$(sed -n 's/^WEB_PORT=//p' .env | tail -n 1)
web_host=${web_host:-127.0.0.1}
[ "$web_host" = 0.0.0.0 ] && web_host=127.0.0.1
echo
echo "  webchat: open http://${web_host}:${web_port:-8000}/ (register two users in two windows to chat)"
echo

# The Procfile's commands (push-server, gunicorn) come from the virtualenv.
export PATH="$PWD/.venv/bin:$PATH"
exec honcho start
