-- What a production relay needs besides publishing: parking events that keep failing,
-- skipping one on an operator's word, retention, and a schema version for consumers.
-- Debezium ignores all of these columns.
alter table outbox
    add column schema_version integer not null default 1,
    -- Set after RELAY_MAX_ATTEMPTS failures: the relay stops retrying, and later events of the
    -- aggregate keep waiting behind it, until an operator retries or skips it.
    add column parked_at      timestamptz,
    -- Set by an operator's "skip": never published, no longer blocks its aggregate.
    add column skipped_at     timestamptz;

-- "Pending" now means neither published nor skipped.
drop index outbox_unpublished;
drop index outbox_unpublished_by_aggregate;
create index outbox_pending on outbox (seq)
    where published_at is null and skipped_at is null;
create index outbox_pending_by_aggregate on outbox (aggregatetype, aggregateid, seq)
    where published_at is null and skipped_at is null;
-- Retention deletes the oldest published rows in small batches.
create index outbox_published_at on outbox (published_at) where published_at is not null;
