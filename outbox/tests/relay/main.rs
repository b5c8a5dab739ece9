//! The relay against real PostgreSQL and Kafka: batches, order per aggregate, several
//! instances, broker outages and faults injected at the broker seam, and the torture test.

mod adversity;
mod faults;
mod relay;
mod torture;
