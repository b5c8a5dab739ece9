-- The rows that can hold an aggregate back: failed at least once (waiting for a retry) or
-- parked, and not yet published or skipped. The relay's claim skips every row that has such a
-- row before it in its aggregate (see outbox-processor's relay.rs, "A claim that cannot be
-- starved"); the index keeps that test to one probe into a set that is empty while the broker
-- takes everything. An index only: the table stays as Debezium's Outbox Event Router reads it.
create index outbox_stuck on outbox (aggregatetype, aggregateid, seq)
    where published_at is null and skipped_at is null
      and (parked_at is not null or next_attempt_at is not null);
