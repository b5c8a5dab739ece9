//! The relay and the whole flow, against real PostgreSQL, Kafka and MongoDB.

mod adversity;
mod crash;
mod faults;
mod flow;
mod operations;
mod relay;
mod torture;
