#!/bin/sh
# Creates the topics of the outbox stack on the compose Kafka broker (the kafka-init
# one-shot service runs it). The broker has auto-creation off, like a production cluster;
# the services would create these themselves, but a real cluster gets them up front with
# its own partition and replication settings. Safe to run again (--if-not-exists).
set -eu

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${TOPIC_PARTITIONS:-3}"
REPLICATION="${TOPIC_REPLICATION_FACTOR:-1}"
KAFKA_TOPICS="${KAFKA_TOPICS_SH:-/opt/kafka/bin/kafka-topics.sh}"

# The relay (or Debezium) publishes to outbox.event.<aggregatetype>; each consumer
# dead-letters to <consumer group>.dlq.
for topic in \
  outbox.event.order \
  outbox.event.reservation \
  order-service.dlq \
  inventory-service.dlq \
  invoice-service.dlq; do
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICATION"
done

echo "kafka-init: topics on $BOOTSTRAP:"
"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --list
