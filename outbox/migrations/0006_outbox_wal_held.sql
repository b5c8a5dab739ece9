-- The WAL relay's held events: an event the broker refused, and every later event of its
-- aggregate, while the slot moves on past them. The slot can only be confirmed up to the
-- oldest event not yet safe, so a parked event left in the stream would hold the WAL of the
-- whole cluster until an operator came; kept here, it is retried, parked, retried or skipped
-- by an operator exactly as the polling relay does with `outbox` rows (the same columns, the
-- same statements). `seq` is this table's own: the order in which events were held, which for
-- one aggregate is its commit order. Empty in polling mode; not in the WAL relay's
-- publication, and not read by Debezium.
create table outbox_wal_held (
    id                 uuid primary key,
    aggregatetype      text        not null,
    aggregateid        text        not null,
    type               text        not null,
    payload            jsonb       not null,
    tracingspancontext text,
    created_at         timestamptz not null,
    seq                bigint      generated always as identity,
    published_at       timestamptz,
    attempts           integer     not null default 0,
    next_attempt_at    timestamptz,
    last_error         text,
    schema_version     integer     not null default 1,
    parked_at          timestamptz,
    skipped_at         timestamptz
);

create index outbox_wal_held_pending on outbox_wal_held (seq)
    where published_at is null and skipped_at is null;
create index outbox_wal_held_pending_by_aggregate
    on outbox_wal_held (aggregatetype, aggregateid, seq)
    where published_at is null and skipped_at is null;
create index outbox_wal_held_stuck on outbox_wal_held (aggregatetype, aggregateid, seq)
    where published_at is null and skipped_at is null
      and (parked_at is not null or next_attempt_at is not null);
create index outbox_wal_held_published_at on outbox_wal_held (published_at)
    where published_at is not null;
