//! inventory-service against real PostgreSQL and Kafka.

mod consumer;
mod helpers;
mod products;
