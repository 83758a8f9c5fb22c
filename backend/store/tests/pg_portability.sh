#!/bin/sh
# store_portability: the schema and every statement of mpos_store on a throw-away PostgreSQL
# (docs/store.md, "Portability"). Creates the schema from the migrations, prepares each
# statement (PostgreSQL resolves every name and infers every parameter type), then runs the
# KSN allocation, the anti-replay write and an activation-code conditional write to see them
# behave as on SQLite. Exit 77 (skipped) when PostgreSQL's server binaries are not installed.
# usage: pg_portability.sh PATH/TO/mpos-store-sql
set -eu
tool=$1
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || ! command -v psql >/dev/null 2>&1; then
    echo "store_portability: PostgreSQL server binaries not installed: skipped"
    exit 77
fi
dir=$(mktemp -d /tmp/mpos-pg-XXXXXX)
# PostgreSQL refuses to run as root: as root, run it as the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "store_portability: running as root without a postgres user: skipped"
        rm -rf "$dir"
        exit 77
    fi
    chown postgres "$dir"
fi
chmod 755 "$dir"
cleanup() {
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U mpos -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log"; exit 1; }
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-k $dir -c listen_addresses= -F" start >/dev/null ||
    { cat "$dir/server.log"; exit 1; }
psql_run() {
    as_pg psql -X -q -h "$dir" -U mpos -v ON_ERROR_STOP=1 "$@"
}
psql_run -d postgres -c "CREATE DATABASE mpos"
"$tool" schema >"$dir/schema.sql"
"$tool" statements >"$dir/statements.sql"
chmod 644 "$dir"/*.sql
# The migrations in one transaction, as the store applies each of them.
psql_run -d mpos -1 -f "$dir/schema.sql"
# Every statement, prepared in one session (so the EXECUTEs below can use them).
cat "$dir/statements.sql" - >"$dir/run.sql" <<'SQL'
EXECUTE sql_schema_insert(1, 1700000000, 'schema');
EXECUTE sql_key_insert('bdk-1', 'D0112B0AX00N0000' || repeat('0', 96), 'ABCDEF', 'B0', 'A',
                       1700000000);
EXECUTE sql_allocator_insert('aes-dukpt', '00A1B2C3', 'bdk-1', 1, 4294967295, 1700000000);
-- the same allocator twice: ON CONFLICT DO NOTHING, no error, nothing written
EXECUTE sql_allocator_insert('aes-dukpt', '00A1B2C3', 'bdk-1', 1, 4294967295, 1700000000);
CREATE TEMP TABLE got (device BIGINT);
INSERT INTO got SELECT 1;
SQL
psql_run -d mpos -f "$dir/run.sql"
# Allocation: UPDATE ... RETURNING next_device_id - 1 gives 1, 2, 3 and stops at the maximum.
out=$(psql_run -d mpos -t -A <<'SQL'
PREPARE take AS UPDATE ksn_allocators SET next_device_id = next_device_id + 1
    WHERE scheme = $1 AND key_set_id = $2 AND next_device_id <= max_device_id
    RETURNING next_device_id - 1;
EXECUTE take('aes-dukpt', '00A1B2C3');
EXECUTE take('aes-dukpt', '00A1B2C3');
EXECUTE take('aes-dukpt', '00A1B2C3');
UPDATE ksn_allocators SET max_device_id = 3;
EXECUTE take('aes-dukpt', '00A1B2C3');
SELECT 'end';
SQL
)
expect=$(printf '1\n2\n3\nend')
if [ "$out" != "$expect" ]; then
    echo "store_portability: allocation on PostgreSQL gave: $out"
    exit 1
fi
# The statements the store runs, with their real parameters, on a small fleet.
psql_run -d mpos -t -A -f "$dir/statements.sql" -f - >"$dir/flow.out" <<'SQL'
EXECUTE sql_next_id('merchant');
EXECUTE sql_merchant_insert('000000000000001', 'Shop', NULL, 1700000000);
EXECUTE sql_merchant_insert('000000000000001', 'Shop', NULL, 1700000000);
EXECUTE sql_key_insert('bdk-1', 'D0112B0AX00N0000' || repeat('0', 96), 'ABCDEF', 'B0', 'A', 1);
EXECUTE sql_allocator_insert('aes-dukpt', '00A1B2C3', 'bdk-1', 1, 4294967295, 1);
EXECUTE sql_allocator_take('aes-dukpt', '00A1B2C3');
EXECUTE sql_allocation_insert('aes-dukpt', '00A1B2C3', 1, '00A1B2C300000001', 'T-1', 1);
EXECUTE sql_terminal_insert_assigned('T-1', '000000000000001', '00000001', NULL, NULL, NULL, 1);
EXECUTE sql_terminal_reassign('T-1', '000000000000001', '00000001', 48856614, 2352222, 250, 0, 2,
                              'provisioned');
EXECUTE sql_terminal_set_keys('T-1', 'aes-dukpt', '00A1B2C300000001', NULL, 'bdk-1',
                              repeat('A', 64), 3, 'provisioned');
EXECUTE sql_code_insert(repeat('C', 64), 'T-1', '000000000000001', 3, 100);
EXECUTE sql_code_fail(repeat('C', 64), 5, 4);
EXECUTE sql_code_use(repeat('C', 64), 5);
EXECUTE sql_code_use(repeat('C', 64), 5);
EXECUTE sql_terminal_activate('T-1', 6, NULL);
EXECUTE sql_terminal_ksn_accept('T-1', '00A1B2C300000001', 7, 7);
EXECUTE sql_terminal_ksn_accept('T-1', '00A1B2C300000001', 7, 8);
EXECUTE sql_terminal_ksn_accept('T-1', '00A1B2C300000001', 8, 9);
EXECUTE sql_terminal_set_state('T-1', 'retired', 10, 'active');
EXECUTE sql_terminal_get('T-1');
SQL
# Counts of rows written, in order, and the terminal's row at the end.
summary=$(psql_run -d mpos -t -A -c "SELECT state || '/' || last_ksn_counter || '/' ||
    retired_at || '/' || (SELECT used_at FROM activation_codes) FROM terminals")
if [ "$summary" != "retired/8/10/5" ]; then
    echo "store_portability: flow on PostgreSQL ended with: $summary"
    cat "$dir/flow.out"
    exit 1
fi
n=$(grep -c '^PREPARE ' "$dir/statements.sql")
version=$(as_pg "$pgbin/postgres" --version)
echo "store_portability: schema and $n statements accepted by $version; allocation, activation"
echo "store_portability: and anti-replay conditional writes behave as on SQLite"
echo "1 passed, 0 failed"
