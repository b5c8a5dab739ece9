-- Units ever received per product. Reserving moves units from on_hand to reserved, so
-- on_hand + reserved = received must hold at every commit; the verifier checks it.
alter table products add column received integer;
update products set received = on_hand + reserved;
alter table products alter column received set not null;
