//! The whole flow: order → outbox → relay → Kafka → inventory (inbox, reserve, outbox) →
//! relay → order confirmed (inbox, outbox) → relay → invoice in MongoDB.

use std::time::Duration;

use outbox::kafka::KafkaConfig;
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use order_service::config::{EmbeddedRelayConfig, Publisher};
use outbox::relay::RelaySettings;
use outbox_processor::config::SourceDatabase;
use service_kit::relay_mode::{RelayMode, WalMode};
use verify::{verify, Relay, Sources};

const WAIT: Duration = Duration::from_secs(20);

struct System {
    sources: Sources,
    orders: String,
    inventory: String,
    invoices: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// The replication slots of a system that reads the WAL, by database.
    slots: Vec<(SecretString, String)>,
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Who publishes order-service's outbox.
#[derive(Clone, Copy)]
enum OrdersRelay {
    /// outbox-processor, like inventory's: the default deployment.
    Standalone,
    /// order-service itself (`RELAY_EMBEDDED=true`); outbox-processor relays inventory only.
    Embedded,
}

/// How the relays read the outboxes.
#[derive(Clone, Copy)]
enum Reading {
    Polling,
    /// From the WAL, on the logical cluster.
    Wal,
}

impl Reading {
    /// The mode, with slots of this test's own: slot names are the cluster's.
    fn mode(self, test: &str) -> RelayMode {
        match self {
            Reading::Polling => RelayMode::Polling,
            Reading::Wal => RelayMode::Wal(WalMode {
                slot_prefix: format!("outbox_test_{test}"),
                window: 256,
                heartbeat: Duration::from_secs(1),
                standby_retry: Duration::from_millis(200),
            }),
        }
    }
}

/// Every service and the relay, on free ports, with fresh databases and their own topics.
async fn spawn_system(orders_relay: OrdersRelay) -> System {
    spawn_system_reading(orders_relay, Reading::Polling).await
}

async fn spawn_system_reading(orders_relay: OrdersRelay, reading: Reading) -> System {
    let kafka: KafkaConfig = testkit::kafka();
    let shutdown = CancellationToken::new();
    let (orders_db, inventory_db) = match reading {
        Reading::Polling => (
            testkit::fresh_database().await,
            testkit::fresh_database().await,
        ),
        Reading::Wal => (
            testkit::fresh_logical_database().await,
            testkit::fresh_logical_database().await,
        ),
    };
    let mode = reading.mode(&Uuid::new_v4().simple().to_string()[..12]);
    let slots = match &mode {
        RelayMode::Polling => Vec::new(),
        RelayMode::Wal(wal) => vec![
            (orders_db.clone(), wal.slot("orders")),
            (inventory_db.clone(), wal.slot("inventory")),
        ],
    };
    let mongodb_database = format!("invoices_test_{}", Uuid::new_v4().simple());
    let sources = Sources {
        orders: orders_db.clone(),
        inventory: inventory_db.clone(),
        mongodb_uri: SecretString::from(testkit::mongo_uri()),
        mongodb_database: mongodb_database.clone(),
        kafka: kafka.clone(),
        settle: Duration::from_secs(20),
        relay: match reading {
            Reading::Polling => Relay::OutboxProcessor,
            Reading::Wal => Relay::Wal,
        },
    };

    let orders = order_service::startup::Application::build(order_service::config::Config {
        service: service_kit::config::PostgresServiceConfig {
            http: service_kit::config::HttpConfig::local(0),
            database_url: orders_db.clone(),
            database_max_connections: 5,
            kafka: kafka.clone(),
            writer: outbox::Writer::default(),
        },
        relay: match orders_relay {
            OrdersRelay::Standalone => Publisher::Standalone,
            OrdersRelay::Embedded => Publisher::Embedded(Box::new(EmbeddedRelayConfig {
                settings: RelaySettings::default(),
                mode: mode.clone(),
            })),
        },
    })
    .await
    .expect("order-service");
    let mut relayed = vec![SourceDatabase {
        name: "inventory".into(),
        url: inventory_db.clone(),
    }];
    if let OrdersRelay::Standalone = orders_relay {
        relayed.push(SourceDatabase {
            name: "orders".into(),
            url: orders_db,
        });
    }
    let inventory =
        inventory_service::startup::Application::build(inventory_service::config::Config {
            http: service_kit::config::HttpConfig::local(0),
            database_url: inventory_db.clone(),
            database_max_connections: 5,
            kafka: kafka.clone(),
            writer: outbox::Writer::default(),
        })
        .await
        .expect("inventory-service");
    let invoices = invoice_service::startup::Application::build(invoice_service::config::Config {
        http: service_kit::config::HttpConfig::local(0),
        mongodb_uri: SecretString::from(testkit::mongo_uri()),
        mongodb_database,
        kafka: kafka.clone(),
    })
    .await
    .expect("invoice-service");
    let relay = outbox_processor::startup::Application::build(outbox_processor::config::Config {
        http: service_kit::config::HttpConfig::local(0),
        databases: relayed,
        kafka,
        relay: RelaySettings::default(),
        mode,
        admin_token: None,
    })
    .await
    .expect("outbox-processor");

    let system = System {
        sources,
        orders: format!("http://127.0.0.1:{}", orders.port()),
        inventory: format!("http://127.0.0.1:{}", inventory.port()),
        invoices: format!("http://127.0.0.1:{}", invoices.port()),
        http: testkit::http(),
        shutdown: shutdown.clone(),
        slots,
    };
    let relay_health = format!("http://127.0.0.1:{}/health", relay.port());
    tokio::spawn(orders.run(shutdown.clone()));
    tokio::spawn(inventory.run(shutdown.clone()));
    tokio::spawn(invoices.run(shutdown.clone()));
    tokio::spawn(relay.run(shutdown));
    let healthy = system
        .http
        .get(relay_health)
        .send()
        .await
        .expect("relay /health");
    assert_eq!(healthy.status(), 200);
    system
}

impl System {
    /// Stops everything, and drops the slots: an inactive slot still holds the cluster's WAL.
    async fn stop(self) {
        self.shutdown.cancel();
        for (url, slot) in &self.slots {
            let pool = outbox::db::connect(url, 1).await.expect("connect");
            outbox::wal::slot::drop_slot(&pool, slot)
                .await
                .expect("drop the test's slot");
        }
    }

    async fn get(&self, url: String) -> (u16, Value) {
        let response = self.http.get(url).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn place(&self, items: Value) -> String {
        let response = self
            .http
            .post(format!("{}/orders", self.orders))
            .json(&json!({"customer_id": "cust-42", "items": items}))
            .send()
            .await
            .expect("POST /orders");
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.unwrap();
        order["id"].as_str().unwrap().to_owned()
    }

    async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        testkit::eventually(WAIT, || async {
            let (_, order) = self.get(format!("{}/orders/{id}", self.orders)).await;
            (order["status"] == status).then_some(order)
        })
        .await
        .unwrap_or_else(|| panic!("order {id} did not reach {status}"))
    }

    async fn product(&self, sku: &str) -> Value {
        self.get(format!("{}/products/{sku}", self.inventory))
            .await
            .1
    }
}

#[tokio::test]
async fn an_order_travels_through_every_service() {
    an_order_travels_through_every_service_with(OrdersRelay::Standalone).await;
}

#[tokio::test]
async fn an_order_travels_through_every_service_with_the_relay_embedded_in_order_service() {
    an_order_travels_through_every_service_with(OrdersRelay::Embedded).await;
}

#[tokio::test]
async fn an_order_travels_through_every_service_with_the_relay_reading_the_wal() {
    an_order_travels_through_every_service_reading(OrdersRelay::Standalone, Reading::Wal).await;
}

#[tokio::test]
async fn an_order_travels_through_every_service_with_the_embedded_relay_reading_the_wal() {
    an_order_travels_through_every_service_reading(OrdersRelay::Embedded, Reading::Wal).await;
}

async fn an_order_travels_through_every_service_with(orders_relay: OrdersRelay) {
    an_order_travels_through_every_service_reading(orders_relay, Reading::Polling).await;
}

async fn an_order_travels_through_every_service_reading(
    orders_relay: OrdersRelay,
    reading: Reading,
) {
    let system = spawn_system_reading(orders_relay, reading).await;

    let id = system
        .place(json!([{"sku": "KEYBOARD-01", "quantity": 2}, {"sku": "MOUSE-01", "quantity": 1}]))
        .await;
    let order = system.wait_for_status(&id, "CONFIRMED").await;
    assert_eq!(order["total_cents"], 2 * 8999 + 2999);
    assert_eq!(order["currency"], "EUR");
    if let OrdersRelay::Embedded = orders_relay {
        // Only order-service relays the orders database here, and its /metrics says so.
        let metrics = system
            .http
            .get(format!("{}/metrics", system.orders))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("outbox_published_total{database=\"orders\"}")),
            "{metrics}"
        );
    }

    let keyboard = system.product("KEYBOARD-01").await;
    assert_eq!(
        (keyboard["on_hand"].as_i64(), keyboard["reserved"].as_i64()),
        (Some(98), Some(2))
    );

    let invoice = testkit::eventually(WAIT, || async {
        let (status, invoice) = system
            .get(format!("{}/invoices/{id}", system.invoices))
            .await;
        (status == 200).then_some(invoice)
    })
    .await
    .expect("an invoice for the confirmed order");
    assert_eq!(invoice["total_cents"], order["total_cents"]);
    assert_eq!(invoice["lines"].as_array().unwrap().len(), 2);

    // The whole system agrees with itself.
    let report = verify(&system.sources)
        .await
        .expect("verifier reads the system");
    assert!(report.ok(), "{report}");
    assert_eq!(
        (report.orders, report.confirmed, report.invoices),
        (1, 1, 1)
    );
    assert!(
        report.messages >= 3,
        "OrderPlaced, StockReserved, OrderConfirmed: {report}"
    );

    // And it notices when it does not: a lost invoice and stock that leaked (with a short
    // settle time: these do not heal by waiting).
    let sources = Sources {
        settle: Duration::from_secs(2),
        ..system.sources.clone()
    };
    let mongo = mongodb::Client::with_uri_str(testkit::mongo_uri())
        .await
        .unwrap();
    mongo
        .database(&system.sources.mongodb_database)
        .collection::<mongodb::bson::Document>("invoices")
        .delete_many(mongodb::bson::doc! {})
        .await
        .unwrap();
    let inventory = outbox::db::connect(&system.sources.inventory, 1)
        .await
        .unwrap();
    sqlx::query("update products set on_hand = on_hand - 1 where sku = 'MOUSE-01'")
        .execute(&inventory)
        .await
        .unwrap();
    let report = verify(&sources).await.unwrap();
    let violations = report.violations.join("\n");
    assert!(
        violations.contains("confirmed but has no invoice"),
        "{violations}"
    );
    assert!(violations.contains("MOUSE-01: on_hand"), "{violations}");
    system.stop().await;
}

#[tokio::test]
async fn an_order_for_more_than_the_stock_is_rejected_and_never_invoiced() {
    let system = spawn_system(OrdersRelay::Standalone).await;

    let id = system
        .place(json!([{"sku": "MONITOR-27", "quantity": 11}, {"sku": "MOUSE-01", "quantity": 1}]))
        .await;
    let order = system.wait_for_status(&id, "REJECTED").await;
    assert_eq!(order["rejection_reason"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(order["rejection_reason"]["sku"], "MONITOR-27");

    // A confirmed order placed afterwards is invoiced; by then the rejected one would have
    // been too, had it been (same topic, same consumer).
    let later = system
        .place(json!([{"sku": "CABLE-USBC", "quantity": 1}]))
        .await;
    system.wait_for_status(&later, "CONFIRMED").await;
    testkit::eventually(WAIT, || async {
        (system
            .get(format!("{}/invoices/{later}", system.invoices))
            .await
            .0
            == 200)
            .then_some(())
    })
    .await
    .expect("invoice of the later order");
    assert_eq!(
        system
            .get(format!("{}/invoices/{id}", system.invoices))
            .await
            .0,
        404
    );
    assert_eq!(
        system.product("MOUSE-01").await["on_hand"],
        200,
        "nothing reserved for a rejected order"
    );
}
