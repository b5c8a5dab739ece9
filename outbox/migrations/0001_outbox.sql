-- The outbox: one row per event, written in the same transaction as the state change.
--
-- The first columns are exactly what Debezium's Outbox Event Router reads (id, aggregatetype,
-- aggregateid, type, payload, and optionally tracingspancontext), so Debezium can replace our
-- relay without a schema change. The rest is bookkeeping for our relay; Debezium ignores it.
create table outbox (
    id                 uuid primary key,
    aggregatetype      text        not null,
    aggregateid        text        not null,
    type               text        not null,
    payload            jsonb       not null,
    tracingspancontext text,
    created_at         timestamptz not null default now(),

    -- Commit-ish order for the relay. Rows of one aggregate are written while the aggregate's
    -- own row is locked, so for one aggregate this order is the commit order.
    seq                bigint      generated always as identity,
    published_at       timestamptz,
    attempts           integer     not null default 0,
    next_attempt_at    timestamptz,
    last_error         text
);

-- The relay's claim query walks only unpublished rows, oldest first.
create index outbox_unpublished on outbox (seq) where published_at is null;
-- "Is an earlier event of this aggregate still unpublished?" (per-aggregate ordering).
create index outbox_unpublished_by_aggregate on outbox (aggregatetype, aggregateid, seq)
    where published_at is null;

-- Wake the relay at commit instead of letting it wait for its next poll. NOTIFY is
-- transactional: it is delivered only if the inserting transaction commits, and repeated
-- notifications in one transaction collapse into one.
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('outbox', '');
    return null;
end
$$;

create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();
