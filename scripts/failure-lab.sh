# shellcheck shell=bash
# The failure lab and the chaos demo, sourced by scripts/stack (which owns the helpers used
# here: start_service, ensure_broker, pid_of, psql_admin, the database URLs, ...).
#
# Each scenario breaks the running stack with real signals and real connection kills while
# orders stream in, brings it back, and ends with `outbox-verify`, which reads every database
# and topic and fails on a lost event, an event applied twice, or broken per-order ordering.

LAB_DIR="$STACK_DIR/lab"
LAB_SCENARIOS=(broker freeze relay embedded-relay consumers scale-out database)
# With Debezium as the relay (STACK_RELAY=debezium): what means the same for a log-tailing relay,
# and the faults that are its own: the relay frozen while it holds its slot, a PostgreSQL
# restart under its replication connection, the slot of a quiet database, and the writers
# removing each row right after its insert.
LAB_DEBEZIUM_SCENARIOS=(broker freeze relay relay-freeze consumers scale-out database pg-restart slot-wal slot-lost remove-after-insert)
# With our relay tailing the WAL (STACK_RELAY=wal): all of the polling relay's, and the faults
# of a log-tailing relay that Debezium meets too.
LAB_WAL_SCENARIOS=(broker freeze relay relay-freeze embedded-relay consumers scale-out database pg-restart slot-wal slot-lost remove-after-insert)

# The lab's scenarios for the relay STACK_RELAY names.
lab_scenarios() {
  case "$RELAY_KIND" in
    debezium) echo "${LAB_DEBEZIUM_SCENARIOS[@]}" ;;
    wal) echo "${LAB_WAL_SCENARIOS[@]}" ;;
    *) echo "${LAB_SCENARIOS[@]}" ;;
  esac
}

# How often the relay moves an idle slot on, in seconds: Debezium's heartbeat.interval.ms, or
# our relay's RELAY_WAL_HEARTBEAT_MS.
slot_heartbeat_seconds() {
  local f ms=${RELAY_WAL_HEARTBEAT_MS:-10000}
  if [[ $RELAY == debezium ]]; then
    for f in "${DEBEZIUM_CONNECTORS[@]}"; do ms=$(connector_setting "$f" heartbeat.interval.ms); done
  fi
  echo $((ms / 1000))
}

# The slot that reads the orders database: Debezium's connector names it; our relay's is
# outbox_relay_<database name>, and the stack names the orders database "orders".
orders_slot() {
  local f
  if [[ $RELAY == debezium ]]; then
    for f in "${DEBEZIUM_CONNECTORS[@]}"; do
      [[ $(connector_setting "$f" database.dbname) == orders ]] && connector_setting "$f" slot.name
    done
  else
    echo "${RELAY_WAL_SLOT_PREFIX:-outbox_relay}_orders"
  fi
}

lab_header() { printf '\n==> failure lab: %s\n' "$*"; }

# load COUNT DELAY_SECONDS [CUSTOMER]: POST orders in the background; HTTP codes go to
# $LAB_DIR/codes. Mostly small orders that fit the stock, some that cannot (rejected), as
# customers do.
load_start() {
  local count=$1 delay=$2 customer=${3:-lab} owner=$BASHPID
  mkdir -p "$LAB_DIR"
  : >"$LAB_DIR/codes"
  (
    local i sku qty
    for ((i = 0; i < count; i++)); do
      # Stop with the shell that started the load, however that one ended (die included).
      kill -0 "$owner" 2>/dev/null || break
      case $((RANDOM % 10)) in
        0) sku=MONITOR-27 qty=50 ;;
        1 | 2) sku=KEYBOARD-01 qty=1 ;;
        3 | 4) sku=MOUSE-01 qty=1 ;;
        *) sku=CABLE-USBC qty=1 ;;
      esac
      curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -X POST "http://127.0.0.1:9000/orders" \
        -H 'Content-Type: application/json' \
        -d "{\"customer_id\":\"$customer\",\"items\":[{\"sku\":\"$sku\",\"quantity\":$qty}]}" \
        >>"$LAB_DIR/codes" 2>/dev/null || echo 000 >>"$LAB_DIR/codes"
      sleep "$delay"
    done
  ) &
  LOAD_PID=$!
}

load_wait() { wait "$LOAD_PID" 2>/dev/null || true; }

load_stop() {
  [[ -n ${LOAD_PID:-} ]] || return 0
  kill "$LOAD_PID" 2>/dev/null || true
  wait "$LOAD_PID" 2>/dev/null || true
}

load_summary() {
  local ok other
  ok=$(grep -c '^201$' "$LAB_DIR/codes" || true)
  other=$(grep -vc '^201$' "$LAB_DIR/codes" || true)
  log "load: $ok orders accepted (201), $other other answers (a request in flight during a kill may fail; nothing is half-written)"
}

# kill -9, as a crash would.
# A scenario whose victim cannot be killed proves nothing, so that is an error, not a skip.
crash() { # component
  local pid
  pid=$(pid_of "$1") || {
    load_stop
    die "lab: $1 is not running under this checkout's stack (.stack/pids); a server on its port started elsewhere (another checkout's scripts/stack?) cannot be killed here: stop that one first"
  }
  log "lab: SIGKILL $1 (pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  while alive "$pid"; do sleep 0.05; done
  rm -f "$(pid_file "$1")"
}

# The lab kills the broker, so it must own it: refuse before any load rather than after.
lab_owns_broker() {
  pid_of kafka >/dev/null ||
    die "lab: the broker on $KAFKA_ADDR was not started by this checkout's scripts/stack, so the lab cannot kill it; stop the stack that started it (its 'scripts/stack down') and run again"
}

revive() { # component
  case "$1" in
    kafka) ensure_broker ;;
    *) start_service "$1" ;;
  esac
}

rand_sleep() { # max_tenths: sleep 0.1 .. max/10 seconds
  sleep "0.$((RANDOM % $1 + 1))"
}

crashes() { # component times: SIGKILL it at random moments, reviving it after each
  local i
  for ((i = 0; i < $2; i++)); do
    rand_sleep 9
    crash "$1"
    rand_sleep 5
    revive "$1"
  done
}

# restart_with VAR=value COMPONENT...: stops the components, sets VAR (which service_env in
# scripts/stack reads), and starts them again. A consumer (a *-service) leaves and rejoins its
# group only once the group has settled, before and after: leaving a group while it is still
# joining wedges it too.
restart_with() {
  local name=${1%%=*} value=${1#*=} s
  shift
  settle_groups "$@"
  for s in "$@"; do stop_component "$s"; done
  printf -v "$name" '%s' "$value"
  for s in "$@"; do start_service "$s"; done
  settle_groups "$@"
}

settle_groups() { # component...: wait_group_settled for each consumer (a *-service) among them
  local s
  for s in "$@"; do
    if [[ $s == *-service ]]; then wait_group_settled "$s"; fi
  done
}

verifier() {
  local bin
  heal_broker
  bin="$(target_dir)/$(profile)/outbox-verify"
  [[ -x $bin ]] || die "outbox-verify not built ($bin)"
  env ORDERS_DATABASE_URL="$PG_ORDERS_URL" INVENTORY_DATABASE_URL="$PG_INVENTORY_URL" \
    MONGODB_URI="$MONGO_URL" MONGODB_DATABASE="$INVOICES_DB" KAFKA_BROKERS="$KAFKA_ADDR" \
    VERIFY_SETTLE_MS="${VERIFY_SETTLE_MS:-90000}" VERIFY_RELAY="$RELAY_KIND" RUST_LOG=warn "$bin"
}

# 1. The broker goes away for LAB_BROKER_DOWN_SECONDS (at least while 15 orders are placed):
#    orders are still accepted, their events wait, everything is published once it is back.
#    Our relay's rows wait unmarked; Debezium marks nothing, so there its wait is the time.
lab_broker() {
  local down=${LAB_BROKER_DOWN_SECONDS:-0} started
  if ((down > 0)); then lab_header "broker unavailable for at least $down s"; else lab_header "broker unavailable"; fi
  crash kafka
  started=$SECONDS
  load_start 15 0.05
  load_wait
  load_summary
  local accepted waiting
  accepted=$(grep -c '^201$' "$LAB_DIR/codes" || true)
  [[ $accepted -eq 15 ]] || die "lab broker: only $accepted of 15 orders were accepted while the broker was down"
  sleep 2
  if [[ $RELAY_KIND == outbox-processor ]]; then
    waiting=$(psql "$PG_ORDERS_URL" -Atc "select count(*) from outbox where published_at is null")
    log "lab: $waiting outbox rows wait for the broker"
    [[ $waiting -ge 15 ]] || die "lab broker: expected the 15 new events to wait in the outbox, found $waiting"
  fi
  if ((SECONDS - started < down)); then
    log "lab: the broker stays down for $((down - SECONDS + started)) s more"
    sleep "$((down - SECONDS + started))"
  fi
  revive kafka
  verifier
}

# A broker frozen with SIGSTOP (a stalled VM, a long GC pause, a stuck disk) is worse than a
# dead one: connections stay open and nothing answers. The running services must come back
# on their own once it resumes, without a restart of anything.
FROZEN_PID=
thaw() {
  if [[ -n $FROZEN_PID ]]; then
    kill -CONT "$FROZEN_PID" 2>/dev/null || true
    FROZEN_PID=
  fi
}

lab_freeze() {
  lab_header "broker frozen (SIGSTOP for ${LAB_FREEZE_SECONDS:-15} s, then SIGCONT)"
  local pid accepted
  load_start 300 0.05
  sleep "$((RANDOM % 3 + 2))"
  pid=$(pid_of kafka) || die "lab freeze: the broker is not running"
  # Never leave the broker stopped, however this scenario ends.
  trap thaw EXIT
  FROZEN_PID=$pid
  log "lab: SIGSTOP kafka (pid $pid) for ${LAB_FREEZE_SECONDS:-15} s while orders keep coming"
  kill -STOP "$pid"
  sleep "${LAB_FREEZE_SECONDS:-15}"
  log "lab: SIGCONT kafka (pid $pid)"
  thaw
  trap - EXIT
  load_wait
  load_summary
  accepted=$(grep -c '^201$' "$LAB_DIR/codes" || true)
  [[ $accepted -eq 300 ]] || die "lab freeze: only $accepted of 300 orders were accepted; the broker's freeze must not reach the order API"
  broker_panicked && die "lab freeze: the broker panicked after the freeze (log: $LOG_DIR/kafka.log)"
  verifier
}

# 2. The relay is SIGKILLed at random moments while orders stream in (ours also between the
#    broker's ack and its mark; Debezium between its sends and its offset flush).
lab_relay() {
  lab_header "relay ($RELAY) crashes"
  load_start 60 0.03
  crashes "$RELAY" 5
  load_wait
  load_summary
  verifier
}

# 2c. The relay frozen (SIGSTOP: a stalled VM, a long GC pause) while orders stream in, for
#     longer than PostgreSQL's wal_sender_timeout (60 s) with Debezium, whose replication
#     connection the server then closes. It must go on by itself after SIGCONT.
lab_relay_freeze() {
  local secs=${LAB_RELAY_FREEZE_SECONDS:-15} pid
  [[ $RELAY == debezium ]] && secs=${LAB_RELAY_FREEZE_SECONDS:-70}
  lab_header "relay ($RELAY) frozen (SIGSTOP for $secs s, then SIGCONT)"
  load_start 100 0.05
  sleep "$((RANDOM % 3 + 1))"
  pid=$(pid_of "$RELAY") || die "lab relay-freeze: $RELAY is not running"
  trap thaw EXIT
  FROZEN_PID=$pid
  log "lab: SIGSTOP $RELAY (pid $pid) for $secs s"
  kill -STOP "$pid"
  sleep "$secs"
  log "lab: SIGCONT $RELAY (pid $pid)"
  thaw
  trap - EXIT
  load_wait
  load_summary
  verifier
}

# 7b. PostgreSQL restarts under everything (the stack's own cluster, so only with a WAL relay):
#     every connection drops, the replication connection too; each resumes where it was.
lab_pg_restart() {
  [[ $PG_PORT == "$LOGICAL_PORT" ]] ||
    die "lab pg-restart restarts the stack's own cluster, which only STACK_RELAY=wal and debezium use; the machine's cluster is not the lab's to restart"
  lab_header "PostgreSQL restarts"
  load_start 100 0.05
  local i
  for i in 1 2; do
    rand_sleep 9
    log "lab: pg_ctlcluster restart of cluster $LOGICAL_CLUSTER (port $LOGICAL_PORT)"
    restart_logical_cluster
  done
  load_wait
  load_summary
  verifier
}

# 2b. The same with the relay embedded in order-service (RELAY_EMBEDDED=true): SIGKILL of the
#     process that takes the orders *and* publishes them, at random moments while orders
#     stream in. Then back to the standalone relay.
#     order-service is also a consumer-group member, and nisshi 0.6.0 wedges a group for good
#     when its elected leader dies before the group has synced (docs/local-broker.md). So
#     each kill waits until the revived order-service owns its partitions again.
wait_group_settled() { # name: until its consumer owns every partition of its topic
  local name=$1 started=$SECONDS owned
  while true; do
    owned=$(owned_partitions "$(service_port "$name")")
    ((owned == LAB_PARTITIONS)) && {
      log "lab: $name owns its $owned partitions after $((SECONDS - started)) s"
      return 0
    }
    if ((SECONDS - started >= 60)); then
      load_stop
      die "lab: $name's consumer owns $owned of $LAB_PARTITIONS partitions after 60 s"
    fi
    sleep 0.5
  done
}

lab_embedded_relay() {
  [[ $RELAY == outbox-processor ]] || die "lab embedded-relay embeds our relay; it does not apply with $RELAY as the relay"
  lab_header "order-service with the relay embedded crashes"
  restart_with RELAY_EMBEDDED=true order-service outbox-processor
  load_start 400 0.05
  local i
  for i in 1 2 3 4 5; do
    rand_sleep 9
    crash order-service
    rand_sleep 5
    revive order-service
    wait_group_settled order-service
  done
  load_wait
  load_summary
  verifier
  restart_with RELAY_EMBEDDED=false order-service outbox-processor
}

# 3. Consumers are SIGKILLed at random moments: before their database commit (the event is
#    redelivered and applied then) or after it but before the offset commit (redelivered and
#    skipped by the inbox).
lab_consumers() {
  lab_header "consumer crashes"
  load_start 60 0.03
  local victim
  for victim in inventory-service order-service invoice-service inventory-service order-service; do
    rand_sleep 9
    crash "$victim"
    rand_sleep 5
    revive "$victim"
  done
  load_wait
  load_summary
  verifier
}

# How many partitions the consumer of the service on PORT owns (its
# kafka_consumer_assigned_partitions gauge); 0 when it does not answer.
owned_partitions() { # port
  local n
  n=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^kafka_consumer_assigned_partitions[{ ]/ {print $NF; exit}')
  echo "${n:-0}"
}

# The order topic's partitions, which the inventory-service instances share: the services
# create their topics with KAFKA_TOPIC_PARTITIONS (default 3), which they inherit from here.
LAB_PARTITIONS=${KAFKA_TOPIC_PARTITIONS:-3}

# wait_owned SECONDS shared|taken: until both inventory-service instances own partitions
# between them (shared), or the second owns them all (taken); says how long it took.
wait_owned() {
  local secs=$1 want=$2 started=$SECONDS a b what
  case "$want" in
    shared) what="the partitions are shared" ;;
    taken) what="$SCALE_OUT took every partition over" ;;
  esac
  while true; do
    a=$(owned_partitions "$(service_port inventory-service)")
    b=$(owned_partitions "$(service_port "$SCALE_OUT")")
    if { [[ $want == shared ]] && ((a > 0 && b > 0 && a + b == LAB_PARTITIONS)); } ||
      { [[ $want == taken ]] && ((b == LAB_PARTITIONS)); }; then
      log "lab: $what after $((SECONDS - started)) s (inventory-service owns $a, $SCALE_OUT owns $b)"
      return 0
    fi
    if ((SECONDS - started >= secs)); then
      load_stop
      die "lab scale-out: not '$what' within ${secs}s (inventory-service owns $a, $SCALE_OUT owns $b)"
    fi
    sleep 0.5
  done
}

# 9. Scale-out: two inventory-service instances share the order topic's partitions in one
#    consumer group. One is SIGKILLed under load, the other takes its partitions over; it comes
#    back, and they share them again. Nothing is lost, nothing applied twice.
lab_scale_out() {
  lab_header "scale-out: two inventory-service instances in one consumer group"
  start_service "$SCALE_OUT"
  wait_owned 60 shared
  load_start 600 0.05
  sleep "$((RANDOM % 3 + 2))"
  crash inventory-service
  wait_owned 30 taken
  sleep "$((RANDOM % 3 + 1))"
  revive inventory-service
  wait_owned 60 shared
  load_wait
  load_summary
  verifier
  stop_component "$SCALE_OUT"
}

# 7. Every connection to both databases is killed mid-stream; services reconnect.
lab_database() {
  lab_header "database connections killed"
  load_start 60 0.03
  local i
  for i in 1 2 3; do
    rand_sleep 9
    log "lab: pg_terminate_backend on every connection to $ORDERS_DB and $INVENTORY_DB"
    psql_admin -c "select count(pg_terminate_backend(pid)) from pg_stat_activity
                   where datname in ('$ORDERS_DB', '$INVENTORY_DB') and pid <> pg_backend_pid()" >/dev/null
  done
  load_wait
  load_summary
  verifier
}

# 10. A quiet database's slot while another database of the cluster is busy (WAL relays only):
#     the WAL is the cluster's, so a slot whose database sees no captured change holds every
#     byte written since its last confirmed position, until its disk is full. The connectors'
#     heartbeat (heartbeat.interval.ms and heartbeat.action.query in deploy/debezium) writes a
#     WAL message into their own database, which lets them confirm a newer position. Here the
#     orders database writes LAB_WAL_MB of WAL into a table no connector reads, and every slot
#     must come back under a quarter of that within three heartbeats.
lab_slot_wal() {
  [[ $PG_PORT == "$LOGICAL_PORT" ]] || die "lab slot-wal is about a WAL relay's slots (STACK_RELAY=wal or debezium)"
  local mb=${LAB_WAL_MB:-64} rows beat started held max
  lab_header "slot of a quiet database while another one writes $mb MB of WAL"
  beat=$(slot_heartbeat_seconds)
  ((beat > 0)) || die "lab slot-wal: the relay has no heartbeat"
  rows=$((mb * 1024 * 1024 / 700)) # a row of 500 characters writes about 700 bytes of WAL
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "create table lab_wal_filler (id int, filler text);
    insert into lab_wal_filler select g, repeat('x', 500) from generate_series(1, $rows) g;
    drop table lab_wal_filler"
  held=$(slots_held_bytes)
  log "lab: after $mb MB of WAL in $ORDERS_DB, the slots hold at most $((held / 1048576)) MB"
  max=$((mb * 1048576 / 4))
  started=$SECONDS
  while ((held > max)); do
    ((SECONDS - started > 3 * beat)) &&
      die "lab slot-wal: a slot still holds $((held / 1048576)) MB after $((3 * beat)) s (bound: $((max / 1048576)) MB)"
    sleep 1
    held=$(slots_held_bytes)
  done
  log "lab: $((SECONDS - started)) s later every slot holds at most $((held / 1024)) kB (bound: $((max / 1048576)) MB)"
  logical_psql -F ' ' -c "select slot_name, database, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)
    from pg_replication_slots order by slot_name" | while read -r slot db bytes; do
    log "lab:   $slot ($db): $bytes bytes of WAL held"
  done
}

# 11. The slot is lost (dropped by hand, or invalidated by max_slot_wal_keep_size) while
#     Debezium is down. With no slot, the stack deletes the connector's offsets, so it snapshots
#     the outbox table and streams from a new slot: everything is published again, nothing is
#     skipped. A snapshot reads the table as it lies on disk unless told an order, and a row
#     written into space a vacuum freed lies before older rows; so the connectors read it
#     ordered by seq (snapshot.select.statement.overrides). Here each of 50 keys gets a first
#     event at the end of the table and a second one in freed space before it, and on the topic
#     every key's first must still come first; then the verifier checks the shop.
lab_slot_lost() {
  [[ $PG_PORT == "$LOGICAL_PORT" ]] || die "lab slot-lost is about a WAL relay's slot (STACK_RELAY=wal or debezium)"
  local type slot
  type="snapshot-check-$(date +%s)"
  slot=$(orders_slot)
  [[ -n $slot ]] || die "lab slot-lost: no slot reads the orders database"
  lab_header "$RELAY's slot lost while it is down: everything published again, in order"
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "
    insert into outbox (id, aggregatetype, aggregateid, type, payload)
      select gen_random_uuid(), '$type-filler', 'filler', 'Filler', jsonb_build_object('padding', repeat('x', 500))
      from generate_series(1, 2000);
    insert into outbox (id, aggregatetype, aggregateid, type, payload)
      select gen_random_uuid(), '$type', 'key-' || k, 'First', '{}' from generate_series(1, 50) k;
    delete from outbox where aggregatetype = '$type-filler'"
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "vacuum outbox"
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "
    insert into outbox (id, aggregatetype, aggregateid, type, payload)
      select gen_random_uuid(), '$type', 'key-' || k, 'Second', '{}' from generate_series(1, 50) k"
  local misplaced
  misplaced=$(psql "$PG_ORDERS_URL" -Atc "select count(*) from (select aggregateid, type,
      row_number() over (partition by aggregateid order by ctid) as on_disk from outbox where aggregatetype = '$type') t
    where type = 'Second' and on_disk = 1")
  log "lab: $misplaced of 50 keys have their second event before their first on disk"
  ((misplaced > 0)) || die "lab slot-lost: the vacuum freed no space before the first events; the check would prove nothing"
  stop_component "$RELAY"
  log "lab: dropping slot $slot while $RELAY is down"
  psql_admin -c "select pg_drop_replication_slot('$slot')" >/dev/null
  revive "$RELAY"
  local verify started=$SECONDS
  verify="$(target_dir)/$(profile)/outbox-verify"
  until env KAFKA_BROKERS="$KAFKA_ADDR" "$verify" partitions "outbox.event.$type" >"$LAB_DIR/snapshot.json" 2>"$LAB_DIR/snapshot.err" &&
    python3 -c 'import json, sys; sys.exit(len(json.load(open(sys.argv[1]))) < 100)' "$LAB_DIR/snapshot.json"; do
    ((SECONDS - started > 90)) &&
      die "lab slot-lost: the snapshot did not publish the 100 check events within 90 s ($(grep -o '"id"' "$LAB_DIR/snapshot.json" | wc -l) on the topic)"
    sleep 1
  done
  psql "$PG_ORDERS_URL" -At -F ' ' -c "select id, type from outbox where aggregatetype = '$type'" >"$LAB_DIR/snapshot-types.txt"
  python3 "$ROOT/scripts/py/snapshot_order.py" "$LAB_DIR/snapshot.json" "$LAB_DIR/snapshot-types.txt" || die "lab slot-lost: the snapshot broke per-key order"
  psql "$PG_ORDERS_URL" -v ON_ERROR_STOP=1 -qc "delete from outbox where aggregatetype = '$type'"
  verifier
}

# 12. The writers delete each outbox row in the transaction that inserted it
#     (OUTBOX_REMOVE_AFTER_INSERT=true), and Debezium is SIGKILLed while orders stream in, as in
#     2: it publishes every event from the WAL, and none of those orders leaves an outbox row in
#     either database. The verifier finds a removed row's event on its topic. Then the writers
#     keep their rows again.
lab_remove_after_insert() {
  [[ $RELAY_KIND != outbox-processor ]] ||
    die "lab remove-after-insert: a removed row is published only by a relay that reads the WAL (STACK_RELAY=wal or debezium)"
  lab_header "the writers remove each outbox row right after inserting it; $RELAY crashes"
  restart_with OUTBOX_REMOVE_AFTER_INSERT=true order-service inventory-service
  local since
  since=$(psql "$PG_ORDERS_URL" -Atc "select now()")
  load_start 60 0.03
  crashes "$RELAY" 3
  load_wait
  load_summary
  verifier
  local placed rows_orders rows_inventory
  placed=$(psql "$PG_ORDERS_URL" -Atc "select count(*) from orders where created_at >= '$since'")
  rows_orders=$(psql "$PG_ORDERS_URL" -Atc "select count(*) from outbox where created_at >= '$since'")
  rows_inventory=$(psql "$PG_INVENTORY_URL" -Atc "select count(*) from outbox where created_at >= '$since'")
  log "lab: $placed orders placed with rows removed; outbox rows left of them: $rows_orders (orders), $rows_inventory (inventory)"
  ((placed > 0)) || die "lab remove-after-insert: no order was placed while rows were removed"
  ((rows_orders + rows_inventory == 0)) ||
    die "lab remove-after-insert: the writers left $((rows_orders + rows_inventory)) outbox rows"
  restart_with OUTBOX_REMOVE_AFTER_INSERT=false order-service inventory-service
}

slots_held_bytes() { # the most WAL any slot on the logical cluster holds
  logical_psql -c "select coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint
    from pg_replication_slots"
}

cmd_lab() {
  local scenarios=("$@") s all=()
  read -r -a all <<<"$(lab_scenarios)"
  [[ ${#scenarios[@]} -gt 0 && ${scenarios[0]} != all ]] || scenarios=("${all[@]}")
  for s in "${scenarios[@]}"; do
    [[ " ${LAB_SCENARIOS[*]} ${LAB_DEBEZIUM_SCENARIOS[*]} ${LAB_WAL_SCENARIOS[*]} " == *" $s "* ]] ||
      die "unknown scenario: $s (one of: ${all[*]})"
  done
  infra_up
  lab_owns_broker
  services_up >/dev/null
  mkdir -p "$LAB_DIR"
  for s in "${scenarios[@]}"; do
    "lab_${s//-/_}"
  done
  log "failure lab: ${scenarios[*]}: every invariant held"
}

# The chaos demo: orders stream in while the relay, the workers and the broker are killed
# and restarted at random; then the verifier says whether anything was lost or applied twice.
cmd_chaos() {
  local seconds=${1:-60}
  [[ $seconds =~ ^[0-9]+$ ]] || die "usage: scripts/stack chaos [seconds]"
  infra_up
  lab_owns_broker
  services_up >/dev/null
  lab_header "chaos for ${seconds}s"
  load_start 100000 0.05
  local end=$((SECONDS + seconds)) victims=("$RELAY" order-service inventory-service invoice-service kafka) victim kills=0
  while ((SECONDS < end)); do
    sleep "$((RANDOM % 3 + 1))"
    heal_broker
    victim=${victims[RANDOM % ${#victims[@]}]}
    crash "$victim"
    kills=$((kills + 1))
    rand_sleep 9
    revive "$victim" >/dev/null
  done
  load_stop
  load_summary
  log "chaos: $kills processes killed with SIGKILL and restarted"
  verifier
}

# The dual write, shown in numbers (docs/testing.md, "Watch the dual write lose events"): orders placed
# the naive way (commit, then publish straight to Kafka: tools/dual-write) under the two classic
# faults, then orders placed through order-service and its outbox under the same faults. Each
# run ends with a report of the orders whose events never reached the topic; it fails unless
# the naive path lost at least one under each fault and the outbox path lost none.
cmd_dual_write() {
  local bin run db url prefix customer pid i
  infra_up
  lab_owns_broker
  services_up >/dev/null
  wait_group_settled order-service
  bin="$(target_dir)/$(profile)/dual-write"
  [[ -x $bin ]] || die "dual-write not built ($bin)"
  run=$(date +%s)
  db=outbox_test_dual_write
  url="postgres://postgres@$PG_HOST:$PG_PORT/$db"
  prefix="dual-write-$run."
  psql_admin -c "drop database if exists $db with (force)" >/dev/null 2>&1
  psql_admin -c "create database $db" >/dev/null
  # The tool on its own database and topics (naive), or reporting on order-service's (outboxed).
  # Commands, not functions: env execs the tool, so a background run's $! is the tool itself
  # (a function in the background is a subshell, which SIGKILL would stop alone).
  local naive=(env DATABASE_URL="$url" KAFKA_BROKERS="$KAFKA_ADDR" KAFKA_TOPIC_PREFIX="$prefix"
    RUST_LOG=warn "$bin")
  local outboxed=(env DATABASE_URL="$PG_ORDERS_URL" KAFKA_BROKERS="$KAFKA_ADDR" KAFKA_TOPIC_PREFIX=
    REPORT_SETTLE_MS=90000 RUST_LOG=warn "$bin")

  lab_header "dual write, naive: the process dies between the commit and the publish"
  customer="naive-crash-$run"
  for i in 1 2 3 4 5; do
    DEMO_CUSTOMER=$customer "${naive[@]}" naive 1000 100 >"$LAB_DIR/dual-write-$i.log" 2>&1 &
    pid=$!
    sleep "1.$((RANDOM % 9))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    log "dual write: SIGKILL after $(grep -c '^committed' "$LAB_DIR/dual-write-$i.log") commits"
  done
  DEMO_CUSTOMER=$customer "${naive[@]}" report lost || die "dual write: the naive path lost nothing when killed"

  lab_header "dual write, naive: the broker is down when it publishes"
  customer="naive-outage-$run"
  crash kafka
  DEMO_CUSTOMER=$customer "${naive[@]}" naive 3 0 || true
  revive kafka
  DEMO_CUSTOMER=$customer "${naive[@]}" report lost || die "dual write: the naive path lost nothing while the broker was down"

  lab_header "outbox: order-service dies while orders stream in"
  customer="outbox-crash-$run"
  load_start 200 0.03 "$customer"
  for i in 1 2; do
    rand_sleep 9
    crash order-service
    revive order-service
    wait_group_settled order-service
  done
  load_wait
  load_summary
  DEMO_CUSTOMER=$customer "${outboxed[@]}" report none || die "dual write: the outbox path lost events when killed"

  lab_header "outbox: the broker is down while orders are placed"
  customer="outbox-outage-$run"
  crash kafka
  load_start 20 0.05 "$customer"
  load_wait
  load_summary
  revive kafka
  DEMO_CUSTOMER=$customer "${outboxed[@]}" report none || die "dual write: the outbox path lost events while the broker was down"
  log "dual write: the naive path lost events under both faults; the outbox lost none"
}

