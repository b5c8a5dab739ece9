//! Order intake: `POST /orders` through order-service, against the same database work done
//! directly over sqlx (the service's own `insert_order`, `outbox::Writer`):
//! what HTTP, JSON, validation and axum cost on top.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use order_service::domain::{CreateOrderRequest, NewOrder};
use secrecy::ExposeSecret;

use crate::{
    process::{free_port, spawn, wait_healthy, CpuMeter, Watched, HEALTHY_WITHIN},
    stats::{met, percentile},
    Results,
};

const CLIENTS: usize = 16;
const INTAKE_SECONDS: u64 = 10;
/// The target, as a share of the bare transactions' rate.
const TARGET_RATIO: f64 = 0.85;

pub async fn intake(results: &mut Results) {
    let kafka = testkit::kafka();
    let url = testkit::fresh_database().await;
    let port = free_port();
    let service = spawn(
        "order-service",
        &[
            ("PORT", port.to_string()),
            ("DATABASE_URL", url.expose_secret().to_owned()),
            ("KAFKA_BROKERS", kafka.brokers.clone()),
            ("KAFKA_TOPIC_PREFIX", kafka.topic_prefix.clone()),
            ("DATABASE_MAX_CONNECTIONS", CLIENTS.to_string()),
            ("RUST_LOG", "warn".into()),
        ],
    );
    wait_healthy(&service, port, HEALTHY_WITHIN).await;
    let base = format!("http://127.0.0.1:{port}");

    let client = reqwest::Client::new();
    let body = serde_json::json!({"customer_id": "bench", "items": [{"sku": "CABLE-USBC", "quantity": 1}]});
    let posted = body.clone();
    let service_pid = service.id().expect("a running child has a pid");
    let watched = || {
        vec![
            ("order-service".to_owned(), Watched::Pid(service_pid)),
            (
                "this benchmark (the clients)".to_owned(),
                Watched::Pid(std::process::id()),
            ),
            ("PostgreSQL".to_owned(), Watched::Named("postgres")),
        ]
    };
    let meter = CpuMeter::start(watched());
    let http = measure(CLIENTS, Duration::from_secs(INTAKE_SECONDS), move || {
        let (client, body, base) = (client.clone(), posted.clone(), base.clone());
        async move {
            let response = client
                .post(format!("{base}/orders"))
                .json(&body)
                .send()
                .await;
            matches!(response, Ok(r) if r.status() == 201)
        }
    })
    .await;

    let http_cpu = meter.stop();
    // The baseline: the handler's database work, through the service's own functions (order,
    // its lines and its OrderPlaced in one transaction, then the relay's wake-up), without
    // HTTP, JSON or axum.
    let pool = outbox::db::connect(&url, CLIENTS as u32)
        .await
        .expect("pool");
    let request: CreateOrderRequest = serde_json::from_value(body).expect("order request");
    let order = Arc::new(NewOrder::try_from(request).expect("a valid order"));
    let bare_pool = pool.clone();
    let meter = CpuMeter::start(watched());
    let bare = measure(CLIENTS, Duration::from_secs(INTAKE_SECONDS), move || {
        let (pool, order) = (bare_pool.clone(), order.clone());
        async move {
            let writer = outbox::Writer::default();
            let mut tx = pool.begin().await.expect("begin");
            let created = order_service::db::insert_order(&mut tx, &order, None)
                .await
                .expect("order")
                .expect("no idempotency key, so no conflict");
            let event = created.placed();
            writer
                .write_in_tx(&mut tx, &event, None)
                .await
                .expect("outbox");
            writer.commit(tx, &pool).await.is_ok()
        }
    })
    .await;
    let bare_cpu = meter.stop();
    let ratio = http.rate / bare.rate;
    results.add(
        &format!("order intake, POST /orders, {CLIENTS} clients"),
        format!(
            "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
            http.rate, http.p50, http.p99
        ),
        format!(
            "{:.0} tx/s, p50 {:.1} ms, p99 {:.1} ms",
            bare.rate, bare.p50, bare.p99
        ),
        format!(
            "ratio {ratio:.2} (>= {TARGET_RATIO:.2}: {})",
            met(ratio >= TARGET_RATIO)
        ),
    );
    // Where each order's CPU goes (ms per order), to explain the ratio: both runs keep the
    // machine's cores busy, so whatever HTTP adds shows as throughput.
    let per_order = |cpu: &[(String, f64)], rate: f64, who: &str| {
        cpu.iter()
            .find(|(name, _)| name == who)
            .map_or(0.0, |(_, share)| share * 1000.0 / rate)
    };
    let clients = "this benchmark (the clients)";
    results.add(
        "order intake, CPU per order",
        format!(
            "order-service {:.2} ms, HTTP clients {:.2} ms, PostgreSQL {:.2} ms",
            per_order(&http_cpu, http.rate, "order-service"),
            per_order(&http_cpu, http.rate, clients),
            per_order(&http_cpu, http.rate, "PostgreSQL"),
        ),
        format!(
            "sqlx clients {:.2} ms, PostgreSQL {:.2} ms",
            per_order(&bare_cpu, bare.rate, clients),
            per_order(&bare_cpu, bare.rate, "PostgreSQL"),
        ),
        "-".into(),
    );
    if http.failed > 0 {
        println!("  ({} requests failed)", http.failed);
    }
    drop(service);
    pool.close().await;
    testkit::drop_database(&url).await;
}

struct Load {
    rate: f64,
    p50: f64,
    p99: f64,
    failed: usize,
}

/// Runs `call` from `clients` concurrent loops for `duration`; rate of successes, latency in ms.
async fn measure<F, Fut>(clients: usize, duration: Duration, call: F) -> Load
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (Vec::new(), 0usize);
            while started.elapsed() < duration {
                let t = Instant::now();
                if call().await {
                    ok.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (ok, f) = t.await.expect("client");
        all.extend(ok);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Load {
        rate: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        failed,
    }
}
