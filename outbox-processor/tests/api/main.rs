//! The relay and the whole flow, against real PostgreSQL, Kafka and MongoDB.

mod crash;
mod flow;
mod operations;
mod relay;
