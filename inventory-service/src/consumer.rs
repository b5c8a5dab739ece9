//! inventory-service's worker: `OrderPlaced` in, `StockReserved` / `StockRejected` out.
//!
//! One transaction holds the inbox record, the stock change and the outbox row, so a crash at
//! any point leaves either all of them or none, and a redelivered `OrderPlaced` is a no-op.

use contracts::{
    DomainEvent, OrderConfirmed, OrderPlaced, OrderRejected, StockRejected, StockReserved,
};
use outbox::{
    envelope::Envelope,
    handler::{EventHandler, HandleError},
    inbox,
};
use sqlx::PgPool;

use crate::{
    db,
    domain::{decide, Decision},
};

/// Consumer group, and this consumer's name in the inbox.
pub const CONSUMER: &str = contracts::consumer::INVENTORY_SERVICE;

pub struct OrderHandler {
    pub pool: PgPool,
    pub writer: outbox::Writer,
}

impl EventHandler for OrderHandler {
    async fn handle(&self, event: &Envelope) -> Result<(), HandleError> {
        match event.event_type.as_str() {
            OrderPlaced::TYPE => self.on_order_placed(event, event.decode()?).await,
            // Events on the order topic that inventory has no business with.
            OrderConfirmed::TYPE | OrderRejected::TYPE => Ok(()),
            other => Err(HandleError::Permanent(format!(
                "unknown event type {other:?} on the order topic"
            ))),
        }
    }
}

impl OrderHandler {
    async fn on_order_placed(
        &self,
        envelope: &Envelope,
        order: OrderPlaced,
    ) -> Result<(), HandleError> {
        let mut tx = self.pool.begin().await?;
        if inbox::record(&mut tx, CONSUMER, envelope.id, &envelope.event_type).await?
            == inbox::Recorded::Duplicate
        {
            tracing::info!("duplicate delivery; already applied");
            return Ok(());
        }
        let skus: Vec<&str> = order.items.iter().map(|l| l.sku.as_str()).collect();
        let products = db::lock_products(&mut tx, &skus).await?;
        let traceparent = envelope.traceparent.as_deref();
        match decide(&order.items, &products) {
            Decision::Reserve { currency, lines } => {
                db::reserve(&mut tx, order.order_id, &lines).await?;
                let event = StockReserved {
                    order_id: order.order_id,
                    currency,
                    lines,
                };
                self.writer
                    .write_in_tx(&mut tx, &event, traceparent)
                    .await?;
                tracing::info!(order_id = %order.order_id, "stock reserved");
            }
            Decision::Reject(reason) => {
                tracing::info!(order_id = %order.order_id, reason = %reason.message, "order rejected");
                let event = StockRejected {
                    order_id: order.order_id,
                    reason,
                };
                self.writer
                    .write_in_tx(&mut tx, &event, traceparent)
                    .await?;
            }
        }
        self.writer.commit(tx, &self.pool).await?;
        Ok(())
    }
}
