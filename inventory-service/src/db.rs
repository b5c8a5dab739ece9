//! The inventory database: products, their stock, and the reservations made for orders. Each
//! statement is written out whole and checked against the schema at compile time (`query!`).

use contracts::ReservedLine;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::Product;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn list_products(pool: &PgPool) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as!(
        Product,
        "select sku, name, unit_price_cents, currency, on_hand, reserved
         from products order by sku",
    )
    .fetch_all(pool)
    .await
}

pub async fn find_product(pool: &PgPool, sku: &str) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as!(
        Product,
        "select sku, name, unit_price_cents, currency, on_hand, reserved
         from products where sku = $1",
        sku,
    )
    .fetch_optional(pool)
    .await
}

/// Reads the products an order names and locks them until the transaction ends. Locking in
/// SKU order means two orders for the same SKUs queue up instead of deadlocking.
pub async fn lock_products(
    tx: &mut PgConnection,
    skus: &[&str],
) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as!(
        Product,
        "select sku, name, unit_price_cents, currency, on_hand, reserved
         from products where sku = any($1) order by sku for update",
        skus as &[&str],
    )
    .fetch_all(&mut *tx)
    .await
}

/// Moves the reserved units from `on_hand` to `reserved` and records the reservation.
pub async fn reserve(
    tx: &mut PgConnection,
    order_id: Uuid,
    lines: &[ReservedLine],
) -> Result<(), sqlx::Error> {
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    // ReservedLine quantities come from `on_hand`, an i32, so they fit.
    let quantities: Vec<i32> = lines
        .iter()
        .map(|l| i32::try_from(l.quantity).unwrap_or(i32::MAX))
        .collect();
    let prices: Vec<i64> = lines.iter().map(|l| l.unit_price_cents).collect();
    sqlx::query!(
        "update products p
         set on_hand = p.on_hand - r.quantity, reserved = p.reserved + r.quantity, updated_at = now()
         from unnest($1::text[], $2::int[]) as r(sku, quantity)
         where p.sku = r.sku",
        &skus as &[&str],
        &quantities,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into reservations (order_id, sku, quantity, unit_price_cents)
         select $1, r.sku, r.quantity, r.price
         from unnest($2::text[], $3::int[], $4::bigint[]) as r(sku, quantity, price)",
        order_id,
        &skus as &[&str],
        &quantities,
        &prices,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
