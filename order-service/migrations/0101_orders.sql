-- Orders and their lines. Prices are unknown until inventory reserves stock, so they are null
-- while the order is PENDING.
create table orders (
    id               uuid primary key,
    customer_id      text        not null,
    status           text        not null check (status in ('PENDING', 'CONFIRMED', 'REJECTED')),
    currency         text,
    total_cents      bigint,
    rejection_reason jsonb,
    -- A client's retry of the same POST carries the same key and gets the first order back.
    idempotency_key  text        unique,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

-- GET /orders lists newest first with a keyset cursor on (created_at, id).
create index orders_newest_first on orders (created_at desc, id desc);

create table order_items (
    order_id         uuid    not null references orders (id) on delete cascade,
    line_no          integer not null,
    sku              text    not null,
    quantity         integer not null check (quantity > 0),
    unit_price_cents bigint,
    primary key (order_id, line_no)
);
