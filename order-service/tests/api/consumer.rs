//! The worker: inventory's answers move the order on, once, whatever Kafka redelivers.

use std::time::Duration;

use contracts::{RejectionCode, RejectionReason, ReservedLine, StockRejected, StockReserved};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

const WAIT: Duration = Duration::from_secs(20);

fn reserved(order_id: Uuid) -> StockReserved {
    StockReserved {
        order_id,
        currency: "EUR".into(),
        lines: vec![
            ReservedLine {
                sku: "KEYBOARD-01".into(),
                quantity: 2,
                unit_price_cents: 8999,
            },
            ReservedLine {
                sku: "MOUSE-01".into(),
                quantity: 1,
                unit_price_cents: 2999,
            },
        ],
    }
}

fn rejected(order_id: Uuid) -> StockRejected {
    StockRejected {
        order_id,
        reason: RejectionReason {
            code: RejectionCode::InsufficientStock,
            message: "insufficient stock for MOUSE-01".into(),
            sku: Some("MOUSE-01".into()),
        },
    }
}

async fn inbox_count(app: &TestApp) -> i64 {
    app.count("select count(*) from processed_events").await
}

async fn wait_for_inbox(app: &TestApp, n: i64) {
    testkit::eventually(WAIT, || async {
        (inbox_count(app).await >= n).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{n} events were not processed in time"));
}

#[tokio::test]
async fn stock_reserved_delivered_twice_confirms_the_order_once() {
    let app = spawn_app().await;
    let order = app.place_order().await;
    let order_id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let event_id = Uuid::now_v7();

    // The same event twice (a relay that re-published after a crash), then a later event of
    // the same order, so that once it is processed we know the duplicate was processed too.
    testkit::publish_event(&app.kafka, event_id, &reserved(order_id)).await;
    testkit::publish_event(&app.kafka, event_id, &reserved(order_id)).await;
    testkit::publish_event(&app.kafka, Uuid::now_v7(), &rejected(order_id)).await;
    wait_for_inbox(&app, 2).await;

    let order: Value = app
        .get_order(&order_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(order["total_cents"], 2 * 8999 + 2999);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["items"][0]["unit_price_cents"], 8999);
    assert_eq!(order["items"][0]["line_total_cents"], 2 * 8999);
    assert_eq!(
        app.count("select count(*) from outbox where type = 'OrderConfirmed'")
            .await,
        1,
        "one OrderConfirmed despite the duplicate"
    );
    let payload: Value =
        sqlx::query_scalar("select payload from outbox where type = 'OrderConfirmed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(payload["total_cents"], 2 * 8999 + 2999);
    assert_eq!(payload["lines"][1]["line_total_cents"], 2999);
    // The late rejection was recorded but did not overturn the decision.
    assert_eq!(
        app.count("select count(*) from outbox where type = 'OrderRejected'")
            .await,
        0
    );
}

#[tokio::test]
async fn stock_rejected_rejects_the_order_with_its_reason() {
    let app = spawn_app().await;
    let order = app.place_order().await;
    let order_id: Uuid = order["id"].as_str().unwrap().parse().unwrap();

    testkit::publish_event(&app.kafka, Uuid::now_v7(), &rejected(order_id)).await;
    wait_for_inbox(&app, 1).await;

    let order: Value = app
        .get_order(&order_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "REJECTED");
    assert_eq!(order["rejection_reason"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(order["rejection_reason"]["sku"], "MOUSE-01");
    assert_eq!(
        app.count("select count(*) from outbox where type = 'OrderRejected'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_and_the_next_one_still_processed() {
    let app = spawn_app().await;
    let order = app.place_order().await;
    let order_id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let topic = app.kafka.topic_for("reservation");
    let key = order_id.to_string();
    let bad_id = Uuid::now_v7().to_string();

    // No event headers at all; then a payload that does not fit its type; then a good event.
    testkit::produce(&app.kafka, &topic, &key, b"not json", &[]).await;
    testkit::produce(
        &app.kafka,
        &topic,
        &key,
        b"{\"nope\":1}",
        &[("id", &bad_id), ("type", "StockReserved")],
    )
    .await;
    testkit::publish_event(&app.kafka, Uuid::now_v7(), &reserved(order_id)).await;
    wait_for_inbox(&app, 1).await;

    let order: Value = app
        .get_order(&order_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "CONFIRMED");
    let dead = testkit::read_topic(
        &app.kafka,
        &app.kafka.dead_letter_topic("order-service"),
        2,
        WAIT,
    )
    .await;
    assert_eq!(dead.len(), 2, "both bad messages dead-lettered");
    let reasons: Vec<String> = dead
        .iter()
        .filter_map(|m| testkit::header(m, "dlq-reason"))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("missing header \"id\"")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("does not parse")),
        "{reasons:?}"
    );
    assert_eq!(
        testkit::header(&dead[0], "dlq-original-topic").as_deref(),
        Some(topic.as_str())
    );
}
