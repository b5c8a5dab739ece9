//! order-service's worker: inventory's answer decides the order, exactly once.
//!
//! For each `StockReserved` / `StockRejected` it opens one transaction that records the event
//! in the inbox, changes the order's status and writes the next event (`OrderConfirmed` or
//! `OrderRejected`) to the outbox. A redelivered event finds its inbox row and changes nothing.

use chrono::Utc;
use contracts::{DomainEvent, OrderConfirmed, OrderRejected, StockRejected, StockReserved};
use outbox::{
    envelope::Envelope,
    handler::{EventHandler, HandleError},
    inbox,
};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    db,
    domain::{price, Order, OrderStatus},
};

/// Consumer group, and this consumer's name in the inbox.
pub const CONSUMER: &str = contracts::consumer::ORDER_SERVICE;

pub struct ReservationHandler {
    pub pool: PgPool,
    pub writer: outbox::Writer,
}

impl EventHandler for ReservationHandler {
    async fn handle(&self, event: &Envelope) -> Result<(), HandleError> {
        match event.event_type.as_str() {
            StockReserved::TYPE => self.on_reserved(event, event.decode()?).await,
            StockRejected::TYPE => self.on_rejected(event, event.decode()?).await,
            other => Err(HandleError::Permanent(format!(
                "unknown event type {other:?} on the reservation topic"
            ))),
        }
    }
}

impl ReservationHandler {
    /// Opens the transaction, records the event in the inbox and locks the order. `None`
    /// means there is nothing to do: a duplicate delivery, or an order already decided (the
    /// inbox row is then committed, so the event is not looked at again).
    async fn begin(
        &self,
        envelope: &Envelope,
        order_id: Uuid,
    ) -> Result<Option<(Transaction<'static, Postgres>, Order)>, HandleError> {
        let mut tx = self.pool.begin().await?;
        if inbox::record(&mut tx, CONSUMER, envelope.id, &envelope.event_type).await?
            == inbox::Recorded::Duplicate
        {
            tracing::info!("duplicate delivery; already applied");
            return Ok(None);
        }
        let order = db::find_for_update(&mut tx, order_id)
            .await?
            .ok_or_else(|| HandleError::Permanent(format!("order {order_id} does not exist")))?;
        if order.status != OrderStatus::Pending {
            tracing::warn!(order_id = %order.id, status = ?order.status, "order already decided");
            tx.commit().await?;
            return Ok(None);
        }
        Ok(Some((tx, order)))
    }

    async fn on_reserved(
        &self,
        envelope: &Envelope,
        event: StockReserved,
    ) -> Result<(), HandleError> {
        let Some((mut tx, order)) = self.begin(envelope, event.order_id).await? else {
            return Ok(());
        };
        let (lines, total_cents) = price(&order.items, &event).map_err(HandleError::Permanent)?;
        db::confirm(&mut tx, order.id, &event.currency, &lines, total_cents).await?;
        let confirmed = OrderConfirmed {
            order_id: order.id,
            customer_id: order.customer_id,
            currency: event.currency,
            lines,
            total_cents,
            confirmed_at: Utc::now(),
        };
        self.writer
            .write_in_tx(&mut tx, &confirmed, envelope.traceparent.as_deref())
            .await?;
        self.writer.commit(tx, &self.pool).await?;
        tracing::info!(order_id = %order.id, total_cents, "order confirmed");
        Ok(())
    }

    async fn on_rejected(
        &self,
        envelope: &Envelope,
        event: StockRejected,
    ) -> Result<(), HandleError> {
        let Some((mut tx, order)) = self.begin(envelope, event.order_id).await? else {
            return Ok(());
        };
        db::reject(&mut tx, order.id, &event.reason).await?;
        let rejected = OrderRejected {
            order_id: order.id,
            customer_id: order.customer_id,
            reason: event.reason,
        };
        self.writer
            .write_in_tx(&mut tx, &rejected, envelope.traceparent.as_deref())
            .await?;
        self.writer.commit(tx, &self.pool).await?;
        tracing::info!(order_id = %order.id, reason = %rejected.reason.message, "order rejected");
        Ok(())
    }
}
