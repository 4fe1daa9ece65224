#!/usr/bin/env bash
# Install PostgreSQL from Debian's packages (when missing), start it, make sure the test
# role exists, and print the URL the tests use (LEPTONIC_TEST_POSTGRES_URL).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    $SUDO pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
    $SUDO pg_ctlcluster "$version" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
exists=$(${SUDO:+sudo} runuser -u postgres -- psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname='leptonic'" 2>/dev/null || true)
if [ "$exists" != 1 ]; then
    ${SUDO:+sudo} runuser -u postgres -- psql -p "$port" -q -c "CREATE ROLE leptonic LOGIN SUPERUSER PASSWORD 'leptonic'" >&2
fi
echo "postgresql://leptonic:leptonic@127.0.0.1:$port/postgres"
