# Shell helpers shared by scripts/test and scripts/bench (sourced, not run).

say() { printf '\n== %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install what a bare Debian lacks to build and test: a PostgreSQL server, libssl-dev and
# pkg-config (the bundled libpq links OpenSSL), python3-venv, curl, nats-server.
ensure_debian_packages() {
    local need=()
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
    dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    # the MLLP-over-TLS test makes its certificate with the openssl command
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
    # the browser test: Debian's Chromium, driven by playwright-core under Node.js
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
    # the event stream's tests start their own JetStream broker (Debian puts it in /usr/sbin)
    [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

# Print the free space where the build and /tmp live; warn when under $1 GB.
report_free_disk() {
    local want=$1 target_gb tmp_gb
    target_gb=$(df -Pk . | awk 'NR==2 {print int($4/1048576)}')
    tmp_gb=$(df -Pk /tmp | awk 'NR==2 {print int($4/1048576)}')
    say "free disk: ${target_gb} GB here, ${tmp_gb} GB in /tmp"
    if [ "$target_gb" -lt "$want" ] || [ "$tmp_gb" -lt "$want" ]; then
        say "WARNING: under ${want} GB free; the build and the tests may fail for want of space"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Start a throwaway PostgreSQL cluster on a free port; sets PG_URL (the `postgres` database)
# and PG_STOP (a command that stops and removes it). Extra arguments are server settings,
# e.g. `start_postgres -c fsync=off`.
start_postgres() {
    local bin dir port
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    dir=$(mktemp -d /tmp/emrsync-pg.XXXXXX)
    port=$(free_port)
    local as_pg="sh -c"
    # PostgreSQL refuses to run as root: use its own account when we are root.
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as_pg="su postgres -s /bin/sh -c"
    fi
    say "starting PostgreSQL ($bin) on 127.0.0.1:$port"
    $as_pg "$bin/initdb -D $dir/data -U postgres -A trust --no-sync -E UTF8" >/dev/null
    $as_pg "$bin/pg_ctl -D $dir/data -l $dir/pg.log -w -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 $*' start" >/dev/null
    PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
    PG_STOP="$as_pg '$bin/pg_ctl -D $dir/data -m immediate stop' >/dev/null 2>&1; rm -rf $dir"
}
