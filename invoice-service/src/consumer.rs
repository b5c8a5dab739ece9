//! invoice-service's worker: one invoice per `OrderConfirmed`, however often it arrives.

use contracts::{DomainEvent, OrderConfirmed, OrderPlaced, OrderRejected};
use mongodb::{bson::DateTime, Database};
use outbox::{
    envelope::Envelope,
    handler::{EventHandler, HandleError},
    inbox::Recorded,
};

use crate::db::{self, Invoice, InvoiceLine};

/// Consumer group name.
pub const CONSUMER: &str = contracts::consumer::INVOICE_SERVICE;

pub struct ConfirmedOrderHandler {
    pub db: Database,
}

impl EventHandler for ConfirmedOrderHandler {
    async fn handle(&self, event: &Envelope) -> Result<(), HandleError> {
        match event.event_type.as_str() {
            OrderConfirmed::TYPE => self.on_confirmed(event, event.decode()?).await,
            OrderPlaced::TYPE | OrderRejected::TYPE => Ok(()),
            other => Err(HandleError::Permanent(format!(
                "unknown event type {other:?} on the order topic"
            ))),
        }
    }
}

impl ConfirmedOrderHandler {
    async fn on_confirmed(
        &self,
        envelope: &Envelope,
        order: OrderConfirmed,
    ) -> Result<(), HandleError> {
        let invoice = Invoice {
            order_id: order.order_id.to_string(),
            customer_id: order.customer_id,
            currency: order.currency,
            lines: order
                .lines
                .into_iter()
                .map(|l| InvoiceLine {
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price_cents: l.unit_price_cents,
                    line_total_cents: l.line_total_cents,
                })
                .collect(),
            total_cents: order.total_cents,
            issued_at: DateTime::now(),
            event_id: envelope.id.to_string(),
        };
        let stored = db::insert(&self.db, &invoice)
            .await
            .map_err(HandleError::transient)?;
        match stored {
            Recorded::First => {
                metrics::counter!("invoices_issued_total").increment(1);
                tracing::info!(order_id = %invoice.order_id, total_cents = invoice.total_cents, "invoice issued");
            }
            Recorded::Duplicate => {
                tracing::info!(order_id = %invoice.order_id, "duplicate delivery; invoice already exists");
            }
        }
        Ok(())
    }
}
