-- Products with their stock. Reserving moves units from on_hand to reserved, so
-- on_hand + reserved is constant until stock is received or shipped.
create table products (
    sku              text primary key,
    name             text        not null,
    unit_price_cents bigint      not null check (unit_price_cents >= 0),
    currency         text        not null,
    on_hand          integer     not null check (on_hand >= 0),
    reserved         integer     not null default 0 check (reserved >= 0),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

-- What was reserved for which order, at which price.
create table reservations (
    order_id         uuid        not null,
    sku              text        not null references products (sku),
    quantity         integer     not null check (quantity > 0),
    unit_price_cents bigint      not null,
    created_at       timestamptz not null default now(),
    primary key (order_id, sku)
);

-- Demo catalogue.
insert into products (sku, name, unit_price_cents, currency, on_hand) values
    ('KEYBOARD-01', 'Mechanical keyboard', 8999, 'EUR', 100),
    ('MOUSE-01', 'Wireless mouse', 2999, 'EUR', 200),
    ('MONITOR-27', '27-inch monitor', 24999, 'EUR', 10),
    ('CABLE-USBC', 'USB-C cable', 999, 'EUR', 500);
