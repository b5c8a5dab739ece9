//! order-service against real PostgreSQL and Kafka: one fresh database and one topic prefix
//! per test.

mod consumer;
mod helpers;
mod hostile;
mod orders;
