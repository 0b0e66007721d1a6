#!/usr/bin/env bash
# The Debian packages that `make run` and `make test` need beyond python3, pip, make and git:
#   system-packages.sh venv PYTHON   PYTHON can make a virtual environment (Debian's pythonX.Y-venv)
#   system-packages.sh chromium      the browser that the browser tests (tests/web) drive
# As root, a missing package is installed with apt-get; otherwise this prints the command to run as
# root and fails.
set -euo pipefail

log() { printf '[system-packages] %s\n' "$*" >&2; }

# apt-get install PACKAGE... as root; anyone else is told exactly what to run.
install() {
    local command="apt-get update && apt-get install -y $*"
    if [ "$(id -u)" -ne 0 ]; then
        log "missing: $*. Run as root, then run make again:"
        log "    $command"
        exit 1
    fi
    command -v apt-get >/dev/null 2>&1 || { log "no apt-get here: install $* by other means"; exit 1; }
    log "installing $*: $command"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q "$@" >&2
}

case "${1:-}" in
    venv)
        python=${2:?usage: system-packages.sh venv PYTHON}
        # Debian's python3 keeps ensurepip (and so `python3 -m venv`) in pythonX.Y-venv.
        if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            install "python${version}-venv"
        fi
        ;;
    chromium)
        # tests/web launches this binary through Playwright (whose own browser download cannot run here).
        chromium=${LANDMARKS_CHROMIUM:-/usr/bin/chromium}
        if [ ! -x "$chromium" ]; then
            if [ -n "${LANDMARKS_CHROMIUM:-}" ]; then
                log "LANDMARKS_CHROMIUM=$chromium is not an executable Chromium"
                exit 1
            fi
            install chromium
        fi
        ;;
    *)
        log "usage: system-packages.sh venv PYTHON | chromium"
        exit 2
        ;;
esac
