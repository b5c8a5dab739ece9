//! order-service's worker: inventory's answer decides the order, exactly once.
//!
//! For each `StockReserved` / `StockRejected` it opens one transaction that records the event
//! in the inbox, changes the order's status and writes the next event (`OrderConfirmed` or
//! `OrderRejected`) to the outbox. A redelivered event finds its inbox row and changes nothing.

use chrono::Utc;
use shared::{
    envelope::Envelope,
    events::{DomainEvent, OrderConfirmed, OrderRejected, StockRejected, StockReserved},
    inbox,
    kafka::{EventHandler, HandleError},
    outbox,
};
use sqlx::PgPool;

use crate::{
    db,
    domain::{price, OrderStatus},
};

/// Consumer group, and this consumer's name in the inbox.
pub const CONSUMER: &str = "order-service";

pub struct ReservationHandler {
    pub pool: PgPool,
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
    async fn on_reserved(
        &self,
        envelope: &Envelope,
        event: StockReserved,
    ) -> Result<(), HandleError> {
        let mut tx = self.pool.begin().await?;
        if !inbox::record(&mut tx, CONSUMER, envelope.id, &envelope.event_type).await? {
            tracing::info!("duplicate delivery; already applied");
            return Ok(());
        }
        let order = db::find_for_update(&mut tx, event.order_id)
            .await?
            .ok_or_else(|| {
                HandleError::Permanent(format!("order {} does not exist", event.order_id))
            })?;
        if order.status != OrderStatus::Pending {
            // A decision was already taken (by an earlier, different event): keep it, but
            // remember this event so it is not looked at again.
            tracing::warn!(order_id = %order.id, status = ?order.status, "order already decided");
            tx.commit().await?;
            return Ok(());
        }
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
        outbox::write(&mut tx, &confirmed, envelope.traceparent.as_deref()).await?;
        tx.commit().await?;
        tracing::info!(order_id = %order.id, total_cents, "order confirmed");
        Ok(())
    }

    async fn on_rejected(
        &self,
        envelope: &Envelope,
        event: StockRejected,
    ) -> Result<(), HandleError> {
        let mut tx = self.pool.begin().await?;
        if !inbox::record(&mut tx, CONSUMER, envelope.id, &envelope.event_type).await? {
            tracing::info!("duplicate delivery; already applied");
            return Ok(());
        }
        let order = db::find_for_update(&mut tx, event.order_id)
            .await?
            .ok_or_else(|| {
                HandleError::Permanent(format!("order {} does not exist", event.order_id))
            })?;
        if order.status != OrderStatus::Pending {
            tracing::warn!(order_id = %order.id, status = ?order.status, "order already decided");
            tx.commit().await?;
            return Ok(());
        }
        db::reject(&mut tx, order.id, &event.reason).await?;
        let rejected = OrderRejected {
            order_id: order.id,
            customer_id: order.customer_id,
            reason: event.reason,
        };
        outbox::write(&mut tx, &rejected, envelope.traceparent.as_deref()).await?;
        tx.commit().await?;
        tracing::info!(order_id = %order.id, reason = %rejected.reason.message, "order rejected");
        Ok(())
    }
}
