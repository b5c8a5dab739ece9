//! End-to-end latency at a steady 200 orders/s: from an order's commit to the relay's mark,
//! to inventory's write and to the invoice, with and without the NOTIFY wake-up, beside
//! the floors of the same run (one bare broker hop, how fast the invoice store takes writes)
//! and what every process costs in CPU, idle and under that load.

use std::{collections::HashMap, time::Duration, time::Instant};

use futures::StreamExt;
use mongodb::bson::{doc, Document};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::{
    broker,
    process::{free_port, servers, spawn, wait_healthy, CpuMeter, Watched, HEALTHY_WITHIN},
    stats::{met, Summary},
    Results,
};

const RATE: u64 = 200;
const SECONDS: u64 = 10;
/// Distinct products the load orders from.
const PRODUCTS: u64 = 100;
/// How long the system sits idle, warmed up, while its idle CPU is measured.
const IDLE_SECONDS: u64 = 5;
/// Targets at this load, with NOTIFY (p99, ms).
const INVENTORY_P99_MS: f64 = 100.0;
const INVENTORY_STRETCH_P99_MS: f64 = 50.0;
const INVOICE_P99_MS: f64 = 250.0;

pub async fn latency(results: &mut Results) {
    let kafka = testkit::kafka();
    let hop = broker::hop(&kafka, RATE, SECONDS).await;
    let invoices_per_second = invoice_store_rate().await;
    results.add(
        "invoice store: inserts (baseline)",
        format!("{invoices_per_second:.0} invoices/s"),
        format!(
            "{} concurrent writers, as invoice-service",
            testkit::kafka().partitions
        ),
        format!(
            "below {RATE}/s: {}",
            if invoices_per_second < RATE as f64 {
                "invoices fall behind the load"
            } else {
                "keeps up"
            }
        ),
    );
    results.add(
        "broker hop: produce -> consume (baseline)",
        hop.to_string(),
        format!(
            "{RATE} msg/s for {SECONDS} s, fetch.wait.max.ms={}",
            kafka.fetch_wait_ms
        ),
        "-".into(),
    );
    // The third run leaves invoice-service (and so the stand-in MongoDB server) out: the same
    // path to inventory without that competition for the CPU.
    for run in [Run::Notify, Run::Polling, Run::NotifyWithoutInvoices] {
        let measured = latency_run(run).await;
        let mode = run.label();
        results.add(
            &format!("end to end, order -> relay's mark, {mode}"),
            measured.relay.to_string(),
            "the relay's share (ack, then mark)".into(),
            "-".into(),
        );
        let inventory_target = if run == Run::Polling {
            "-".into()
        } else {
            format!(
                "p99 < {INVENTORY_P99_MS:.0} ms: {} (stretch < {INVENTORY_STRETCH_P99_MS:.0} ms: {})",
                met(measured.inventory.p99 < INVENTORY_P99_MS),
                met(measured.inventory.p99 < INVENTORY_STRETCH_P99_MS)
            )
        };
        results.add(
            &format!("end to end, order -> inventory, {mode}"),
            measured.inventory.to_string(),
            format!("{RATE} orders/s for {SECONDS} s"),
            inventory_target,
        );
        if let Some(invoice) = measured.invoice {
            let target = if run == Run::Notify {
                format!(
                    "p99 < {INVOICE_P99_MS:.0} ms: {}",
                    met(invoice.p99 < INVOICE_P99_MS)
                )
            } else {
                "-".into()
            };
            results.add(
                &format!("end to end, order -> invoice, {mode}"),
                invoice.to_string(),
                "3 hops through the relay".into(),
                target,
            );
        }
        if run == Run::Notify {
            for cost in measured.cpu {
                results.add(
                    &format!("CPU, {}", cost.process),
                    format!("{:.0} % of a core at {RATE} orders/s", cost.loaded * 100.0),
                    format!("idle: {:.1} %", cost.idle * 100.0),
                    "-".into(),
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Notify,
    Polling,
    NotifyWithoutInvoices,
}

impl Run {
    fn label(self) -> &'static str {
        match self {
            Run::Notify => "NOTIFY",
            Run::Polling => "no NOTIFY (idle poll 500 ms)",
            Run::NotifyWithoutInvoices => "NOTIFY, no invoice-service",
        }
    }

    fn notify(self) -> bool {
        self != Run::Polling
    }

    fn invoices(self) -> bool {
        self != Run::NotifyWithoutInvoices
    }
}

/// How fast the invoice store takes invoices the way invoice-service writes them (one insert
/// per invoice, under the unique index, one writer per partition): the ceiling on the invoice
/// consumer's throughput. Below the latency run's rate, invoices fall behind for the whole run.
async fn invoice_store_rate() -> f64 {
    let mongo = mongodb::Client::with_uri_str(testkit::mongo_uri())
        .await
        .expect("mongo");
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let db = mongo.database(&name);
    invoice_service::db::ensure_indexes(&db)
        .await
        .expect("index");
    let (writers, each) = (testkit::kafka().partitions as usize, 300);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    let invoice = invoice_service::db::Invoice {
                        order_id: Uuid::now_v7().to_string(),
                        customer_id: "bench".into(),
                        currency: "EUR".into(),
                        lines: vec![invoice_service::db::InvoiceLine {
                            sku: "BENCH-1".into(),
                            quantity: 1,
                            unit_price_cents: 100,
                            line_total_cents: 100,
                        }],
                        total_cents: 100,
                        issued_at: mongodb::bson::DateTime::now(),
                        event_id: Uuid::now_v7().to_string(),
                    };
                    let _ = invoice_service::db::insert(&db, &invoice)
                        .await
                        .expect("insert");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let rate = (writers * each) as f64 / started.elapsed().as_secs_f64();
    let _ = db.drop().await;
    rate
}

/// Latencies in ms from the order's commit to each point, and what the processes cost.
struct Latencies {
    /// The relay marked OrderPlaced published (after the broker's acknowledgement).
    relay: Summary,
    /// inventory-service applied OrderPlaced.
    inventory: Summary,
    /// invoice-service wrote the invoice (when it ran).
    invoice: Option<Summary>,
    cpu: Vec<CpuCost>,
}

/// One process's (or server's) CPU use, as a share of one core.
struct CpuCost {
    process: String,
    idle: f64,
    loaded: f64,
}

/// Runs the whole system, sends orders at a steady rate, and measures from each order's commit
/// to the relay's mark, inventory's write and invoice-service's write.
async fn latency_run(run: Run) -> Latencies {
    let kafka = testkit::kafka();
    let orders_db = testkit::fresh_database().await;
    let inventory_db = testkit::fresh_database().await;
    let mongo_db = format!("bench_{}", Uuid::new_v4().simple());
    let common = |port: u16| {
        vec![
            ("PORT", port.to_string()),
            ("KAFKA_BROKERS", kafka.brokers.clone()),
            ("KAFKA_TOPIC_PREFIX", kafka.topic_prefix.clone()),
            ("KAFKA_FETCH_WAIT_MS", kafka.fetch_wait_ms.to_string()),
            ("RUST_LOG", "warn".to_owned()),
        ]
    };
    let (p_orders, p_inventory, p_invoice, p_relay) =
        (free_port(), free_port(), free_port(), free_port());
    let mut env = common(p_orders);
    env.push(("DATABASE_URL", orders_db.expose_secret().to_owned()));
    let orders_service = spawn("order-service", &env);
    let mut env = common(p_inventory);
    env.push(("DATABASE_URL", inventory_db.expose_secret().to_owned()));
    let inventory_service = spawn("inventory-service", &env);
    let mut env = common(p_invoice);
    env.push(("MONGODB_URI", testkit::mongo_uri()));
    env.push(("MONGODB_DATABASE", mongo_db.clone()));
    let invoice_service = run.invoices().then(|| spawn("invoice-service", &env));
    wait_healthy(&orders_service, p_orders, HEALTHY_WITHIN).await;
    wait_healthy(&inventory_service, p_inventory, HEALTHY_WITHIN).await;
    if let Some(invoice_service) = &invoice_service {
        wait_healthy(invoice_service, p_invoice, HEALTHY_WITHIN).await;
    }
    let mut env = common(p_relay);
    env.push((
        "OUTBOX_DATABASES",
        format!(
            "orders={},inventory={}",
            orders_db.expose_secret(),
            inventory_db.expose_secret()
        ),
    ));
    env.push(("RELAY_NOTIFY", run.notify().to_string()));
    let relay = spawn("outbox-processor", &env);
    wait_healthy(&relay, p_relay, HEALTHY_WITHIN).await;

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{p_orders}");
    // Products with stock for every order, so every order goes all the way to an invoice. The
    // orders spread over them as a shop's would: with one product, every reservation would wait
    // for the row lock of the one before it, a queue that belongs to the shop, not to the outbox.
    let inventory = outbox::db::connect(&inventory_db, 2)
        .await
        .expect("inventory");
    sqlx::query(
        "insert into products (sku, name, unit_price_cents, currency, on_hand, received)
         select 'BENCH-' || n, 'Benchmark item ' || n, 100, 'EUR', 1000000000, 1000000000
         from generate_series(0, $1 - 1) n",
    )
    .bind(PRODUCTS as i32)
    .execute(&inventory)
    .await
    .expect("bench products");
    let body = |n: u64| {
        let sku = format!("BENCH-{}", n % PRODUCTS);
        serde_json::json!({"customer_id": "bench", "items": [{"sku": sku, "quantity": 1}]})
    };
    let post = |client: reqwest::Client, body: serde_json::Value, base: String| async move {
        client
            .post(format!("{base}/orders"))
            .json(&body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    let mongo = mongodb::Client::with_uri_str(testkit::mongo_uri())
        .await
        .expect("mongo");
    let collection = mongo.database(&mongo_db).collection::<Document>("invoices");
    let orders = outbox::db::connect(&orders_db, 2).await.expect("orders");
    // The last write of an order's journey: its invoice, or inventory's inbox without one.
    let finished = || async {
        if run.invoices() {
            collection.count_documents(doc! {}).await.unwrap_or(0) as i64
        } else {
            sqlx::query_scalar("select count(*) from processed_events")
                .fetch_one(&inventory)
                .await
                .unwrap_or(0)
        }
    };

    // Warm up: one order all the way through, so every consumer has joined its group and
    // every topic exists before the clock starts.
    post(client.clone(), body(0), base.clone()).await;
    testkit::eventually(Duration::from_secs(60), || async {
        (finished().await >= 1).then_some(())
    })
    .await
    .expect("the warm-up order went all the way through");

    let mut watched = vec![
        ("order-service".to_owned(), pid_of(&orders_service)),
        ("inventory-service".to_owned(), pid_of(&inventory_service)),
        ("outbox-processor (relay)".to_owned(), pid_of(&relay)),
    ];
    if let Some(invoice) = &invoice_service {
        watched.push(("invoice-service".to_owned(), pid_of(invoice)));
    }
    watched.extend(servers());
    watched.push((
        "load generator (this benchmark)".to_owned(),
        Watched::Pid(std::process::id()),
    ));
    let idle = CpuMeter::start(watched.clone());
    tokio::time::sleep(Duration::from_secs(IDLE_SECONDS)).await;
    let idle = idle.stop();

    let load_started = chrono::Utc::now();
    let loaded = CpuMeter::start(watched);
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut sent = Vec::new();
    for n in 0..RATE * SECONDS {
        ticker.tick().await;
        sent.push(tokio::spawn(post(client.clone(), body(n), base.clone())));
    }
    for s in sent {
        let _ = s.await;
    }
    let loaded = loaded.stop();
    let expected: i64 = sqlx::query_scalar("select count(*) from orders where created_at > $1")
        .bind(load_started)
        .fetch_one(&orders)
        .await
        .expect("count");
    testkit::eventually(Duration::from_secs(120), || async {
        (finished().await > expected).then_some(())
    })
    .await;

    // Commit times (the transaction's now(), a hair before its commit) and consumer writes.
    type At = chrono::DateTime<chrono::Utc>;
    let placed: Vec<(String, Uuid, At, Option<At>)> = sqlx::query_as(
        "select o.id::text, x.id, o.created_at, x.published_at from orders o
         join outbox x on x.aggregateid = o.id::text and x.type = 'OrderPlaced'
         where o.created_at > $1",
    )
    .bind(load_started)
    .fetch_all(&orders)
    .await
    .expect("orders");
    let applied: HashMap<Uuid, At> = sqlx::query_as(
        "select event_id, processed_at from processed_events where event_type = 'OrderPlaced'",
    )
    .fetch_all(&inventory)
    .await
    .expect("inbox")
    .into_iter()
    .collect();
    let mut issued: HashMap<String, i64> = HashMap::new();
    let mut cursor = collection.find(doc! {}).await.expect("invoices");
    while let Some(Ok(d)) = cursor.next().await {
        if let (Ok(order), Ok(at)) = (d.get_str("order_id"), d.get_datetime("issued_at")) {
            issued.insert(order.to_owned(), at.timestamp_millis());
        }
    }
    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let (mut to_relay, mut to_inventory, mut to_invoice) = (Vec::new(), Vec::new(), Vec::new());
    for (order, event, committed, published) in placed {
        if let Some(at) = published {
            to_relay.push(ms(at - committed));
        }
        if let Some(at) = applied.get(&event) {
            to_inventory.push(ms(*at - committed));
        }
        if let Some(ms) = issued.get(&order) {
            to_invoice.push((ms - committed.timestamp_millis()) as f64);
        }
    }
    // Leave no database behind: piled up, they slow the servers down for the next run.
    let _ = mongo.database(&mongo_db).drop().await;
    drop((orders_service, inventory_service, invoice_service, relay));
    orders.close().await;
    inventory.close().await;
    testkit::drop_database(&orders_db).await;
    testkit::drop_database(&inventory_db).await;
    let idle: HashMap<String, f64> = idle.into_iter().collect();
    Latencies {
        relay: Summary::of(to_relay),
        inventory: Summary::of(to_inventory),
        invoice: run.invoices().then(|| Summary::of(to_invoice)),
        cpu: loaded
            .into_iter()
            .map(|(process, loaded)| CpuCost {
                idle: idle.get(&process).copied().unwrap_or(f64::NAN),
                process,
                loaded,
            })
            .collect(),
    }
}

fn pid_of(child: &tokio::process::Child) -> Watched {
    Watched::Pid(child.id().expect("a running child has a pid"))
}
