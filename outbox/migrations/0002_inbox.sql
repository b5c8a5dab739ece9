-- The inbox (idempotent consumer): a consumer inserts the event id in the same transaction as
-- the change the event causes. A second delivery of the same event finds the row already there
-- and changes nothing, which turns Kafka's "at least once" into "applied exactly once".
create table processed_events (
    consumer     text        not null,
    event_id     uuid        not null,
    event_type   text        not null,
    processed_at timestamptz not null default now(),
    primary key (consumer, event_id)
);
