//! The flow console: a live page that shows the outbox pattern at work, order by order.
//!
//! For each recent order it shows when each step happened: the order and its `OrderPlaced`
//! committed in one transaction, the relay publishing it, inventory reserving (or rejecting)
//! in its own transaction with its answer in its own outbox, the relay publishing that answer,
//! order-service confirming, invoice-service invoicing. Beside them: what waits in each outbox
//! (pending, parked) and how far behind each consumer group is (lag).
//!
//! It only reads: the two PostgreSQL databases, MongoDB's invoices and Kafka's offsets, the
//! same tables the walkthrough shows with psql. One poller reads them every
//! `CONSOLE_POLL_MS` (the offsets once a second) and every open page gets the result over
//! server-sent events, so the
//! number of browsers does not change the load on the databases. It is part of the demo,
//! not of the pattern: nothing depends on it, and no service needs it to run.

pub mod config;
pub mod flow;
pub mod routes;
pub mod sources;
pub mod startup;
pub mod state;
pub mod watch;
