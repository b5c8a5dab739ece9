-- The relay is woken after the writing transaction commits, by the writer
-- (`outbox::commit`), no longer by a trigger inside it. A transaction that sends NOTIFY
-- takes one cluster-wide lock at commit and holds it until its commit record is flushed to
-- disk, so every transaction that wrote an outbox row committed one after the other, each
-- waiting for the one before it to reach the disk: under load the trigger serialised all the
-- services' writes (measured: commits waiting on that lock were the most frequent activity of
-- the whole server at 200 orders/s). A NOTIFY sent on its own after the commit writes nothing
-- to flush and holds the lock for microseconds.
drop trigger if exists outbox_notify on outbox;
drop function if exists outbox_notify();
