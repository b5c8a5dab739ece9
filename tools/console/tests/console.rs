//! The console against real PostgreSQL and MongoDB: an order's rows become its steps, the
//! outboxes' backlog is counted, and an open event stream gets a new order without asking.

use std::time::Duration;

use console::{config::Config, startup::Application};
use mongodb::bson::{doc, DateTime as BsonDateTime};
use secrecy::ExposeSecret;
use serde_json::Value;
use service_kit::config::HttpConfig;
use sqlx::PgPool;
use testkit::Spawned;
use uuid::Uuid;

struct Shop {
    orders: PgPool,
    inventory: PgPool,
    invoices: mongodb::Database,
    console: Spawned,
}

async fn shop() -> Shop {
    let orders_url = testkit::fresh_database().await;
    let inventory_url = testkit::fresh_database().await;
    let orders = PgPool::connect(orders_url.expose_secret()).await.unwrap();
    let inventory = PgPool::connect(inventory_url.expose_secret())
        .await
        .unwrap();
    outbox::db::migrate(&orders, &order_service::db::MIGRATOR)
        .await
        .unwrap();
    outbox::db::migrate(&inventory, &inventory_service::db::MIGRATOR)
        .await
        .unwrap();
    let mongodb_database = format!("console_test_{}", Uuid::new_v4().simple());
    let invoices = mongodb::Client::with_uri_str(testkit::mongo_uri())
        .await
        .unwrap()
        .database(&mongodb_database);
    let config = Config {
        http: HttpConfig::local(0),
        orders_database_url: orders_url,
        inventory_database_url: inventory_url,
        mongodb_uri: testkit::mongo_uri().into(),
        mongodb_database,
        kafka: testkit::kafka(),
        poll: Duration::from_millis(50),
        orders: 20,
        relay_mode: service_kit::relay_mode::RelayMode::Polling,
    };
    let app = Application::build(config).await.unwrap();
    let console = Spawned::spawn(app.port(), |shutdown| app.run(shutdown));
    Shop {
        orders,
        inventory,
        invoices,
        console,
    }
}

/// An order as order-service writes it; `at` is its commit time.
async fn order(pool: &PgPool, id: Uuid, status: &str, at: &str) {
    sqlx::query(
        "insert into orders (id, customer_id, status, created_at, updated_at)
         values ($1, 'c-1', $2, $3::timestamptz, $3::timestamptz)",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

/// An outbox row of the order `order`, written at `at`, published at `published`.
async fn event(pool: &PgPool, order: Uuid, kind: &str, at: &str, published: Option<&str>) {
    sqlx::query(
        "insert into outbox (id, aggregatetype, aggregateid, type, payload, created_at, published_at)
         values ($1, 'order', $2, $3, '{}', $4::timestamptz, $5::timestamptz)",
    )
    .bind(Uuid::now_v7())
    .bind(order.to_string())
    .bind(kind)
    .bind(at)
    .bind(published)
    .execute(pool)
    .await
    .unwrap();
}

async fn flow(shop: &Shop, until: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{}/flow.json", shop.console.address);
    testkit::eventually(Duration::from_secs(10), || async {
        let flow = testkit::get_json(&testkit::http(), url.clone()).await;
        until(&flow).then_some(flow)
    })
    .await
    .expect("the console never showed the expected flow")
}

fn steps(order: &Value) -> Vec<(String, String, Option<i64>)> {
    order["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
                s["elapsed_ms"].as_i64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_order_shows_the_steps_its_rows_record() {
    let shop = shop().await;
    // A confirmed and invoiced order, with every time 10 ms apart, the waits varying.
    let confirmed = Uuid::now_v7();
    // Times a little in the past, as the services would have written them (the outbox ids,
    // UUIDv7 made now, are never older than their order: the console relies on that).
    // Whole seconds: MongoDB keeps milliseconds, PostgreSQL microseconds.
    let base = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 10, 0).unwrap();
    let t = |ms: i64| {
        (base + chrono::Duration::milliseconds(ms))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    order(&shop.orders, confirmed, "CONFIRMED", &t(0)).await;
    event(&shop.orders, confirmed, "OrderPlaced", &t(0), Some(&t(7))).await;
    event(
        &shop.inventory,
        confirmed,
        "StockReserved",
        &t(20),
        Some(&t(31)),
    )
    .await;
    event(
        &shop.orders,
        confirmed,
        "OrderConfirmed",
        &t(45),
        Some(&t(50)),
    )
    .await;
    shop.invoices
        .collection("invoices")
        .insert_one(doc! {
            "order_id": confirmed.to_string(),
            "issued_at": BsonDateTime::parse_rfc3339_str(t(68)).unwrap(),
        })
        .await
        .unwrap();
    // A rejected one; one whose OrderPlaced inventory already answered before the relay's mark
    // landed (the mark comes after the broker's ack): published shows done, without a time;
    // and one nobody has published yet: everything after its commit waits.
    let rejected = Uuid::now_v7();
    order(&shop.orders, rejected, "REJECTED", &t(100)).await;
    event(
        &shop.orders,
        rejected,
        "OrderPlaced",
        &t(100),
        Some(&t(101)),
    )
    .await;
    event(
        &shop.inventory,
        rejected,
        "StockRejected",
        &t(110),
        Some(&t(112)),
    )
    .await;
    event(&shop.orders, rejected, "OrderRejected", &t(120), None).await;
    let unmarked = Uuid::now_v7();
    order(&shop.orders, unmarked, "PENDING", &t(200)).await;
    event(&shop.orders, unmarked, "OrderPlaced", &t(200), None).await;
    event(&shop.inventory, unmarked, "StockReserved", &t(210), None).await;
    let waiting = Uuid::now_v7();
    order(&shop.orders, waiting, "PENDING", &t(300)).await;
    event(&shop.orders, waiting, "OrderPlaced", &t(300), None).await;
    sqlx::query("update outbox set parked_at = now() where type = 'OrderRejected'")
        .execute(&shop.orders)
        .await
        .unwrap();

    // A snapshot that saw the four orders may still have counted the outbox before the park:
    // the poller reads one table after the other.
    let flow = flow(&shop, |f| {
        let parked = f["outboxes"].as_array().is_some_and(|o| {
            o.iter()
                .any(|o| o["database"] == "orders" && o["parked"] == 1)
        });
        parked && f["orders"].as_array().is_some_and(|o| o.len() == 4)
    })
    .await;
    let of = |id: Uuid| {
        flow["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == id.to_string())
            .cloned()
            .unwrap()
    };
    let done = |step: &str, ms: i64| (step.to_owned(), "done".to_owned(), Some(ms));
    let waits = |step: &str| (step.to_owned(), "waiting".to_owned(), None);
    assert_eq!(
        steps(&of(confirmed)),
        vec![
            done("committed", 0),
            done("published", 7),
            done("reserved", 20),
            done("answer_published", 31),
            done("confirmed", 45),
            done("invoiced", 68),
        ]
    );
    assert_eq!(
        steps(&of(rejected)),
        vec![
            done("committed", 0),
            done("published", 1),
            done("reserved", 10),
            done("answer_published", 12),
            done("confirmed", 20),
            ("invoiced".to_owned(), "never".to_owned(), None),
        ]
    );
    assert_eq!(of(rejected)["steps"][2]["label"], "stock rejected");
    assert_eq!(
        steps(&of(unmarked)),
        vec![
            done("committed", 0),
            ("published".to_owned(), "done".to_owned(), None),
            done("reserved", 10),
            waits("answer_published"),
            waits("confirmed"),
            waits("invoiced"),
        ]
    );
    assert_eq!(
        steps(&of(waiting)),
        vec![
            done("committed", 0),
            waits("published"),
            waits("reserved"),
            waits("answer_published"),
            waits("confirmed"),
            waits("invoiced"),
        ]
    );
    // Newest first.
    assert_eq!(flow["orders"][0]["order_id"], waiting.to_string());
    // Orders: two OrderPlaced pending, the OrderRejected parked; inventory: one answer pending.
    let outbox = |db: &str| {
        let o = flow["outboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["database"] == db)
            .cloned()
            .unwrap();
        (
            o["pending"].as_i64().unwrap(),
            o["parked"].as_i64().unwrap(),
        )
    };
    assert_eq!(outbox("orders"), (2, 1));
    assert_eq!(outbox("inventory"), (1, 0));
    let groups: Vec<_> = flow["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["group"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(groups.len(), 3, "{groups:?}");
}

#[tokio::test]
async fn an_open_event_stream_gets_each_new_order() {
    let shop = shop().await;
    let response = testkit::http()
        .get(format!("{}/events", shop.console.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response;
    let mut seen = String::new();
    let mut next_snapshot = async || -> Value {
        loop {
            if let Some(end) = seen.find("\n\n") {
                let frame: String = seen.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(frame.contains("event: snapshot"), "{frame}");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.chunk())
                .await
                .expect("no event within 10 s")
                .unwrap()
                .expect("stream ended");
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let first = next_snapshot().await;
    assert!(first["orders"].is_array());

    for n in 1..=3 {
        let id = Uuid::now_v7();
        order(&shop.orders, id, "PENDING", "2026-11-26T12:00:00Z").await;
        let shows = loop {
            let snapshot = next_snapshot().await;
            let ids: Vec<_> = snapshot["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_owned())
                .collect();
            if ids.contains(&id.to_string()) {
                break ids;
            }
        };
        assert_eq!(shows.len(), n);
    }
}

#[tokio::test]
async fn an_open_event_stream_ends_when_the_console_stops() {
    let shop = shop().await;
    let mut response = testkit::http()
        .get(format!("{}/events", shop.console.address))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("no first event")
        .unwrap();
    assert!(first.is_some_and(|c| String::from_utf8_lossy(&c).contains("event: snapshot")));
    drop(shop.console); // cancels its shutdown token
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the console's shutdown");
}
