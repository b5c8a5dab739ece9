#!/bin/sh
# Registers (or updates) one Debezium connector per outbox database on Kafka Connect, then
# waits until each connector and its task run. The connect-init one-shot service of the
# `debezium` compose profile runs it; it is idempotent (PUT .../config creates or updates).
#
# Debezium's PostgreSQL connector reads ONE database, so the stack needs two connectors:
# outbox-orders.json (database orders) and outbox-inventory.json (database inventory).
set -eu

CONNECT_URL="${CONNECT_URL:-http://connect:8083}"
DIR="${CONNECTOR_DIR:-$(dirname "$0")}"
TIMEOUT_S="${CONNECT_INIT_TIMEOUT_S:-120}"

found=0
for file in "$DIR"/outbox-*.json; do
  [ -f "$file" ] || continue
  found=1
  name=$(basename "$file" .json)
  echo "connect-init: PUT $CONNECT_URL/connectors/$name/config ($file)"
  curl -fsS --retry 30 --retry-delay 2 --retry-all-errors \
    -X PUT -H 'Content-Type: application/json' --data "@$file" \
    "$CONNECT_URL/connectors/$name/config" >/dev/null
done
[ "$found" -eq 1 ] || { echo "connect-init: no outbox-*.json in $DIR" >&2; exit 1; }

for file in "$DIR"/outbox-*.json; do
  name=$(basename "$file" .json)
  waited=0
  while :; do
    status=$(curl -fsS "$CONNECT_URL/connectors/$name/status" 2>/dev/null || true)
    case "$status" in
      *'"state":"FAILED"'*)
        echo "connect-init: $name FAILED: $status" >&2
        exit 1
        ;;
      *'"tasks":[{'*'"state":"RUNNING"'*)
        # The connector's own state comes first in the answer, the task's after "tasks".
        case "$status" in
          '{"name":"'*'","connector":{"state":"RUNNING"'*)
            echo "connect-init: $name is RUNNING"
            break
            ;;
        esac
        ;;
    esac
    if [ "$waited" -ge "$TIMEOUT_S" ]; then
      echo "connect-init: $name not RUNNING after ${TIMEOUT_S}s: $status" >&2
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
done
echo "connect-init: all connectors running"
