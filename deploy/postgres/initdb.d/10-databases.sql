-- Runs once, when the postgres container initialises an empty data volume
-- (docker-compose.yml mounts this folder at /docker-entrypoint-initdb.d/).
--
-- One PostgreSQL server, one database per owning service: order-service owns `orders`,
-- inventory-service owns `inventory`. Each service creates its own tables (and its outbox)
-- with its migrations at startup; nothing else is created here.
create database orders;
create database inventory;
