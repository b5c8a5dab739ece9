//! `OrderPlaced` in, stock reserved and `StockReserved`/`StockRejected` out, exactly once.

use chrono::Utc;
use contracts::{OrderLine, OrderPlaced};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp, WAIT};

fn placed(order_id: Uuid, lines: &[(&str, u32)]) -> OrderPlaced {
    OrderPlaced {
        order_id,
        customer_id: "cust-42".into(),
        items: lines
            .iter()
            .map(|(sku, quantity)| OrderLine {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
        placed_at: Utc::now(),
    }
}

async fn outbox(app: &TestApp) -> Vec<(String, Value)> {
    sqlx::query_as("select type, payload from outbox order by seq")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn order_placed_delivered_twice_reserves_stock_once() {
    let app = spawn_app().await;
    let order_id = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    let event = placed(order_id, &[("KEYBOARD-01", 2), ("MOUSE-01", 1)]);

    testkit::publish_event(&app.kafka, event_id, &event).await;
    testkit::publish_event(&app.kafka, event_id, &event).await;
    testkit::publish_event(&app.kafka, event_id, &event).await;
    // A different event with the same key: processed after the duplicates (same partition).
    let sentinel = placed(Uuid::now_v7(), &[("CABLE-USBC", 1)]);
    testkit::publish_event_with_key(&app.kafka, &order_id.to_string(), Uuid::now_v7(), &sentinel)
        .await;
    app.wait_for_inbox(2).await;

    let keyboard = app.product("KEYBOARD-01").await;
    assert_eq!(
        (keyboard["on_hand"].as_i64(), keyboard["reserved"].as_i64()),
        (Some(98), Some(2))
    );
    let mouse = app.product("MOUSE-01").await;
    assert_eq!(
        (mouse["on_hand"].as_i64(), mouse["reserved"].as_i64()),
        (Some(199), Some(1))
    );

    let events = outbox(&app).await;
    let reserved: Vec<&Value> = events
        .iter()
        .filter(|(t, _)| t == "StockReserved")
        .map(|(_, p)| p)
        .collect();
    // One for the order, one for the sentinel; the duplicates added nothing.
    assert_eq!(reserved.len(), 2, "{events:?}");
    assert_eq!(reserved[0]["order_id"], order_id.to_string());
    assert_eq!(reserved[0]["currency"], "EUR");
    assert_eq!(reserved[0]["lines"][0]["sku"], "KEYBOARD-01");
    assert_eq!(reserved[0]["lines"][0]["unit_price_cents"], 8999);

    // A duplicate is skipped by the inbox, not failed by a constraint and dead-lettered.
    let dead = app.kafka.dead_letter_topic("inventory-service");
    let dead = testkit::read_topic(&app.kafka, &dead, 1, std::time::Duration::from_secs(2)).await;
    assert!(
        dead.is_empty(),
        "duplicates were dead-lettered instead of skipped"
    );
}

#[tokio::test]
async fn short_stock_and_unknown_skus_are_rejected_with_a_reason_and_change_nothing() {
    let app = spawn_app().await;
    let short = Uuid::now_v7();
    let unknown = Uuid::now_v7();
    testkit::publish_event(
        &app.kafka,
        Uuid::now_v7(),
        &placed(short, &[("MOUSE-01", 1), ("MONITOR-27", 11)]),
    )
    .await;
    testkit::publish_event(
        &app.kafka,
        Uuid::now_v7(),
        &placed(unknown, &[("NOPE-1", 1)]),
    )
    .await;
    app.wait_for_inbox(2).await;

    let events = outbox(&app).await;
    assert_eq!(events.len(), 2);
    let by_order = |id: Uuid| {
        events
            .iter()
            .find(|(_, p)| p["order_id"] == id.to_string())
            .unwrap()
    };
    let (kind, payload) = by_order(short);
    assert_eq!(kind, "StockRejected");
    assert_eq!(payload["reason"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(payload["reason"]["sku"], "MONITOR-27");
    let (kind, payload) = by_order(unknown);
    assert_eq!(kind, "StockRejected");
    assert_eq!(payload["reason"]["code"], "UNKNOWN_SKU");

    // All or nothing: the mouse line of the rejected order reserved nothing.
    assert_eq!(app.product("MOUSE-01").await["on_hand"], 200);
    assert_eq!(app.product("MONITOR-27").await["on_hand"], 10);
    assert_eq!(app.count("select count(*) from reservations").await, 0);
}

#[tokio::test]
async fn malformed_and_unknown_messages_are_dead_lettered_and_the_next_one_processed() {
    let app = spawn_app().await;
    let topic = app.kafka.topic_for("order");
    let order_id = Uuid::now_v7();
    let key = order_id.to_string();
    let id = Uuid::now_v7().to_string();

    testkit::produce(&app.kafka, &topic, &key, b"\x00\x01garbage", &[]).await;
    testkit::produce(
        &app.kafka,
        &topic,
        &key,
        b"{}",
        &[("id", &id), ("type", "OrderTeleported")],
    )
    .await;
    testkit::publish_event(
        &app.kafka,
        Uuid::now_v7(),
        &placed(order_id, &[("CABLE-USBC", 3)]),
    )
    .await;
    app.wait_for_inbox(1).await;

    assert_eq!(app.product("CABLE-USBC").await["on_hand"], 497);
    let dead = testkit::read_topic(
        &app.kafka,
        &app.kafka.dead_letter_topic("inventory-service"),
        2,
        WAIT,
    )
    .await;
    let reasons: Vec<String> = dead
        .iter()
        .filter_map(|m| testkit::header(m, "dlq-reason"))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unknown event type \"OrderTeleported\"")),
        "{reasons:?}"
    );
    // The copy keeps the original bytes.
    assert!(dead
        .iter()
        .any(|m| rdkafka::Message::payload(m) == Some(b"\x00\x01garbage".as_slice())));
}
