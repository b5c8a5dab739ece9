//! Order intake: `POST /orders` through order-service, against the same two inserts (order,
//! outbox row) as bare transactions over sqlx: what HTTP, validation and idempotency cost.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;
use shared::testing;
use uuid::Uuid;

use crate::{
    process::{free_port, spawn, wait_healthy},
    stats::{met, percentile},
    Results,
};

const CLIENTS: usize = 16;
const INTAKE_SECONDS: u64 = 10;
/// The target, as a share of the bare transactions' rate.
const TARGET_RATIO: f64 = 0.85;

pub async fn intake(results: &mut Results) {
    let kafka = testing::kafka();
    let url = testing::fresh_database().await;
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
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;

    let client = reqwest::Client::new();
    let body = serde_json::json!({"customer_id": "bench", "items": [{"sku": "CABLE-USBC", "quantity": 1}]});
    let http = measure(CLIENTS, Duration::from_secs(INTAKE_SECONDS), move || {
        let (client, body, base) = (client.clone(), body.clone(), base.clone());
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

    // The baseline: what the handler's transaction does, without HTTP, parsing or axum.
    let pool = shared::db::connect(&url, CLIENTS as u32)
        .await
        .expect("pool");
    let bare_pool = pool.clone();
    let bare = measure(CLIENTS, Duration::from_secs(INTAKE_SECONDS), move || {
        let pool = bare_pool.clone();
        async move {
            let id = Uuid::now_v7();
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("insert into orders (id, customer_id, status) values ($1, 'bench', 'PENDING')")
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect("order");
            sqlx::query(
                "insert into outbox (id, aggregatetype, aggregateid, type, payload)
                 values ($1, 'order', $2, 'OrderPlaced', $3)",
            )
            .bind(Uuid::now_v7())
            .bind(id.to_string())
            .bind(serde_json::json!({"order_id": id, "customer_id": "bench", "items": [{"sku": "CABLE-USBC", "quantity": 1}]}))
            .execute(&mut *tx)
            .await
            .expect("outbox");
            // Committed and the relay woken, as the handler does (`outbox::commit`).
            shared::outbox::commit(tx, &pool).await.is_ok()
        }
    })
    .await;
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
    if http.failed > 0 {
        println!("  ({} requests failed)", http.failed);
    }
    drop(service);
    pool.close().await;
    testing::drop_database(&url).await;
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
