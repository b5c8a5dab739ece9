//! The relay against real PostgreSQL and Kafka: batches, order per aggregate, several
//! instances, broker outages, faults injected at the broker and source seams, and the torture
//! test.

mod adversity;
mod faults;
mod relay;
mod relays;
mod source;
mod torture;
mod wal;
