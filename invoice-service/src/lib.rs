//! invoice-service: an idempotent consumer on a document database.
//!
//! It consumes `OrderConfirmed` and stores one invoice per order in MongoDB. Here the inbox is
//! the invoice itself: a unique index on `order_id` makes a second insert for the same order
//! fail with a duplicate-key error, which the handler treats as "already applied". When the
//! effect of an event has a natural key like this, that unique index is all the dedup needed.
//!
//! # Layout
//! - [`db`]: the `invoices` collection and its unique index.
//! - [`consumer`]: the `OrderConfirmed` handler; [`routes`]: `GET /invoices`.
//! - [`startup`], [`config`], [`error`]; [`state`]: what the handlers share.

pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod routes;
pub mod startup;
pub mod state;
