//! The relay process and the whole flow, against real PostgreSQL, Kafka and MongoDB. The
//! relay's own tests, which need only the `outbox` crate, are in `outbox/tests/relay`.

mod crash;
mod flow;
mod operations;
