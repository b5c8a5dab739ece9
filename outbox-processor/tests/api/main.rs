//! The relay and the whole flow, against real PostgreSQL, Kafka and MongoDB.

mod flow;
mod relay;
