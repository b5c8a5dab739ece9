//! The orders database: every SQL statement order-service runs, next to nothing else.
//!
//! Functions that change data take `&mut PgConnection`, i.e. the caller's transaction, so
//! the caller decides what commits together (the order and its outbox row, always). Each
//! statement is written out whole and checked against the schema at compile time (`query!`,
//! with the metadata in `.sqlx/`, which the test command checks is current).

use chrono::{DateTime, Utc};
use contracts::{PricedLine, RejectionReason};
use sqlx::{types::Json, PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{IdempotencyKey, NewOrder, Order, OrderItem, OrderStatus};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

struct OrderRow {
    id: Uuid,
    customer_id: String,
    status: OrderStatus,
    currency: Option<String>,
    total_cents: Option<i64>,
    rejection_reason: Option<Json<RejectionReason>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct ItemRow {
    order_id: Uuid,
    sku: String,
    quantity: i32,
    unit_price_cents: Option<i64>,
}

/// Inserts a PENDING order. Returns `None` when the idempotency key was already used (the
/// insert waits for a concurrent request with the same key and then conflicts with it).
pub async fn insert_order(
    tx: &mut PgConnection,
    order: &NewOrder,
    key: Option<&IdempotencyKey>,
) -> Result<Option<Order>, sqlx::Error> {
    let id = Uuid::now_v7();
    let row = sqlx::query_as!(
        OrderRow,
        r#"insert into orders (id, customer_id, status, idempotency_key)
         values ($1, $2, 'PENDING', $3)
         on conflict (idempotency_key) do nothing
         returning id, customer_id, status as "status: OrderStatus", currency, total_cents,
                   rejection_reason as "rejection_reason: Json<RejectionReason>", created_at, updated_at"#,
        id,
        order.customer_id.as_str(),
        key.map(IdempotencyKey::as_str),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };

    let skus: Vec<&str> = order.items.iter().map(|i| i.sku.as_str()).collect();
    let quantities: Vec<i32> = order
        .items
        .iter()
        // At most 50 merged lines of Quantity::MAX each: far below i32::MAX, never saturates.
        .map(|i| i32::try_from(i.quantity.get()).unwrap_or(i32::MAX))
        .collect();
    sqlx::query!(
        "insert into order_items (order_id, line_no, sku, quantity)
         select $1, line.no, line.sku, line.quantity
         from unnest($2::text[], $3::int[]) with ordinality as line(sku, quantity, no)",
        id,
        &skus as &[&str],
        &quantities,
    )
    .execute(&mut *tx)
    .await?;

    let items = order
        .items
        .iter()
        .map(|i| OrderItem {
            sku: i.sku.as_str().to_owned(),
            quantity: i.quantity.get(),
            unit_price_cents: None,
            line_total_cents: None,
        })
        .collect();
    Ok(Some(assemble(row, items)))
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query_as!(
        OrderRow,
        r#"select id, customer_id, status as "status: OrderStatus", currency, total_cents,
                rejection_reason as "rejection_reason: Json<RejectionReason>", created_at, updated_at
         from orders where id = $1"#,
        id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    with_lines(&mut conn, row).await
}

/// Reads an order and locks it until the transaction ends, so the status change that follows
/// cannot race with another event for the same order.
pub async fn find_for_update(
    tx: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Order>, sqlx::Error> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"select id, customer_id, status as "status: OrderStatus", currency, total_cents,
                rejection_reason as "rejection_reason: Json<RejectionReason>", created_at, updated_at
         from orders where id = $1 for update"#,
        id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    with_lines(tx, row).await
}

pub async fn find_by_idempotency_key(
    pool: &PgPool,
    key: &IdempotencyKey,
) -> Result<Option<Order>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query_as!(
        OrderRow,
        r#"select id, customer_id, status as "status: OrderStatus", currency, total_cents,
                rejection_reason as "rejection_reason: Json<RejectionReason>", created_at, updated_at
         from orders where idempotency_key = $1"#,
        key.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    with_lines(&mut conn, row).await
}

/// The order of `row`, if there is one, with its lines.
async fn with_lines(
    conn: &mut PgConnection,
    row: Option<OrderRow>,
) -> Result<Option<Order>, sqlx::Error> {
    let Some(row) = row else { return Ok(None) };
    Ok(with_items(conn, vec![row]).await?.pop())
}

pub async fn exists(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from orders where id = $1) as "exists!""#,
        id
    )
    .fetch_one(pool)
    .await
}

/// Newest first; `before` is the id of the last order of the previous page (keyset
/// pagination: stable while new orders arrive, and cheap at any depth).
pub async fn list(
    pool: &PgPool,
    limit: i64,
    before: Option<Uuid>,
) -> Result<Vec<Order>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query_as!(
        OrderRow,
        r#"select id, customer_id, status as "status: OrderStatus", currency, total_cents,
                rejection_reason as "rejection_reason: Json<RejectionReason>", created_at, updated_at
         from orders
         where $2::uuid is null
            or (created_at, id) < (select created_at, id from orders where id = $2)
         order by created_at desc, id desc
         limit $1"#,
        limit,
        before,
    )
    .fetch_all(&mut *conn)
    .await?;
    with_items(&mut conn, rows).await
}

pub async fn confirm(
    tx: &mut PgConnection,
    id: Uuid,
    currency: &str,
    lines: &[PricedLine],
    total_cents: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update orders set status = 'CONFIRMED', currency = $2, total_cents = $3, updated_at = now()
         where id = $1",
        id,
        currency,
        total_cents,
    )
    .execute(&mut *tx)
    .await?;
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let prices: Vec<i64> = lines.iter().map(|l| l.unit_price_cents).collect();
    sqlx::query!(
        "update order_items i set unit_price_cents = p.price
         from unnest($2::text[], $3::bigint[]) as p(sku, price)
         where i.order_id = $1 and i.sku = p.sku",
        id,
        &skus as &[&str],
        &prices,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn reject(
    tx: &mut PgConnection,
    id: Uuid,
    reason: &RejectionReason,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update orders set status = 'REJECTED', rejection_reason = $2, updated_at = now()
         where id = $1",
        id,
        Json(reason) as _,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Loads the lines of `rows` in one query and builds the orders, keeping the rows' order.
async fn with_items(
    conn: &mut PgConnection,
    rows: Vec<OrderRow>,
) -> Result<Vec<Order>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let items = sqlx::query_as!(
        ItemRow,
        "select order_id, sku, quantity, unit_price_cents from order_items
         where order_id = any($1) order by order_id, line_no",
        &ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let lines = items
                .iter()
                .filter(|i| i.order_id == row.id)
                .map(|i| OrderItem {
                    sku: i.sku.clone(),
                    // The column has a `quantity > 0` check, so it is never negative.
                    quantity: u32::try_from(i.quantity).unwrap_or_default(),
                    unit_price_cents: i.unit_price_cents,
                    line_total_cents: i.unit_price_cents.map(|p| p * i64::from(i.quantity)),
                })
                .collect();
            assemble(row, lines)
        })
        .collect())
}

fn assemble(row: OrderRow, items: Vec<OrderItem>) -> Order {
    Order {
        id: row.id,
        customer_id: row.customer_id,
        status: row.status,
        items,
        currency: row.currency,
        total_cents: row.total_cents,
        rejection_reason: row.rejection_reason.map(|Json(r)| r),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}
