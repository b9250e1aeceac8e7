#!/bin/sh
# Writes pgbouncer.ini and the auth file from the environment, then runs PgBouncer in the
# foreground: transaction pooling (what queuectl's QUEUECTL_DATABASE_POOLER=pgbouncer is for).
#   PGBOUNCER_DB_HOST / PGBOUNCER_DB_PORT   the Postgres server (postgres:5432)
#   PGBOUNCER_USER / PGBOUNCER_PASSWORD     the one user clients log in as; PgBouncer logs in
#                                            to the server with the same password (SCRAM)
#   PGBOUNCER_POOL_SIZE                      server connections per database and user (20)
#   PGBOUNCER_MAX_CLIENTS                    client connections it accepts (2000)
set -eu
dir=/run/pgbouncer
: "${PGBOUNCER_USER:?set PGBOUNCER_USER}"
: "${PGBOUNCER_PASSWORD:?set PGBOUNCER_PASSWORD}"
umask 077
# the auth file quotes with double quotes, a double quote doubled
user=$(printf '%s' "$PGBOUNCER_USER" | sed 's/"/""/g')
password=$(printf '%s' "$PGBOUNCER_PASSWORD" | sed 's/"/""/g')
printf '"%s" "%s"\n' "$user" "$password" > "$dir/users.txt"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=${PGBOUNCER_DB_HOST:-postgres} port=${PGBOUNCER_DB_PORT:-5432}
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = ${PGBOUNCER_MAX_CLIENTS:-2000}
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile =
pidfile =
INI
exec pgbouncer "$dir/pgbouncer.ini"
