//! Operating the relay: parked events through the admin API, and the status page.

use std::time::Duration;

use contracts::DomainEvent;
use outbox::relay::RelaySettings;
use outbox_processor::{config::Config, config::SourceDatabase, startup::Application};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use testkit::{answer, Spawned};
use uuid::Uuid;

const TOKEN: &str = "test-admin-token";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Pinged {
    target: String,
    #[serde(default)]
    padding: String,
}

impl DomainEvent for Pinged {
    const TYPE: &'static str = "Pinged";
    const AGGREGATE_TYPE: &'static str = "ping";
    fn aggregate_id(&self) -> String {
        self.target.clone()
    }
}

async fn write(pool: &PgPool, target: &str, broken: bool) -> Uuid {
    let writer = outbox::Writer::default();
    let mut tx = pool.begin().await.unwrap();
    let padding = if broken {
        "x".repeat(2_000_000)
    } else {
        String::new()
    };
    let id = writer
        .write_in_tx(
            &mut tx,
            &Pinged {
                target: target.into(),
                padding,
            },
            None,
        )
        .await
        .unwrap();
    writer.commit(tx, pool).await.unwrap();
    id
}

struct Admin {
    pool: PgPool,
    kafka: outbox::kafka::KafkaConfig,
    http: reqwest::Client,
    service: Spawned,
}

impl Admin {
    async fn post(&self, path: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.service.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    async fn parked(&self) -> Vec<Value> {
        let list: Value = self
            .http
            .get(format!("{}/admin/parked", self.service.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["items"].as_array().unwrap().clone()
    }

    async fn wait_until_parked(&self, id: Uuid) {
        testkit::eventually(WAIT, || async {
            self.parked()
                .await
                .iter()
                .any(|e| e["id"] == id.to_string())
                .then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{id} was not parked"));
    }

    async fn wait_until_done(&self, id: Uuid) -> (bool, bool) {
        testkit::eventually(WAIT, || async {
            let (published, skipped): (bool, bool) = sqlx::query_as(
                "select published_at is not null, skipped_at is not null from outbox where id = $1",
            )
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            (published || skipped).then_some((published, skipped))
        })
        .await
        .unwrap_or_else(|| panic!("{id} was neither published nor skipped"))
    }

    /// Removes the padding that makes an event too large: the "fix" before a retry.
    async fn fix(&self, id: Uuid) {
        sqlx::query("update outbox set payload = payload - 'padding' where id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

async fn spawn_relay() -> Admin {
    spawn_relay_polling_every(Duration::from_millis(100)).await
}

async fn spawn_relay_polling_every(poll_interval: Duration) -> Admin {
    let (url, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let config = Config {
        http: service_kit::config::HttpConfig::local(0),
        databases: vec![SourceDatabase {
            name: "orders".into(),
            url,
        }],
        kafka: kafka.clone(),
        relay: RelaySettings {
            max_attempts: 2,
            retry_base: Duration::from_millis(10),
            poll_interval,
            ..RelaySettings::default()
        },
        mode: service_kit::relay_mode::RelayMode::Polling,
        admin_token: Some(TOKEN.into()),
    };
    let app = Application::build(config).await.unwrap();
    let service = Spawned::spawn(app.port(), |shutdown| app.run(shutdown));
    Admin {
        pool,
        kafka,
        http: testkit::http(),
        service,
    }
}

#[tokio::test]
async fn parked_events_are_listed_retried_and_skipped_through_the_admin_api() {
    let admin = spawn_relay().await;

    // Without the token: nothing.
    let anonymous = admin
        .http
        .get(format!("{}/admin/parked", admin.service.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = admin
        .http
        .post(format!(
            "{}/admin/events/orders/{}/skip",
            admin.service.address,
            Uuid::now_v7()
        ))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // a/1 cannot be published: parked after two attempts; a/2 waits behind it; b goes on.
    let a1 = write(&admin.pool, "a", true).await;
    let a2 = write(&admin.pool, "a", false).await;
    let b1 = write(&admin.pool, "b", false).await;
    admin.wait_until_parked(a1).await;
    assert_eq!(admin.wait_until_done(b1).await, (true, false));
    let parked = admin.parked().await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0]["attempts"], 2);
    assert_eq!(parked[0]["database"], "orders");
    assert!(parked[0]["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let a2_published: bool =
        sqlx::query_scalar("select published_at is not null from outbox where id = $1")
            .bind(a2)
            .fetch_one(&admin.pool)
            .await
            .unwrap();
    assert!(!a2_published, "a/2 must not overtake the parked a/1");

    // Retry one after fixing it: a/1 then a/2 go out.
    admin.fix(a1).await;
    let retried = admin
        .post(&format!("/admin/events/orders/{a1}/retry"))
        .await;
    assert_eq!(retried.status(), 200);
    assert_eq!(admin.wait_until_done(a1).await, (true, false));
    assert_eq!(admin.wait_until_done(a2).await, (true, false));
    let messages = testkit::read_topic(&admin.kafka, &admin.kafka.topic_for("ping"), 3, WAIT).await;
    // Order is promised per aggregate, not across partitions: read each key's ids apart.
    let ids_of = |key: &str| -> Vec<String> {
        messages
            .iter()
            .filter(|m| m.key() == Some(key.as_bytes()))
            .filter_map(|m| testkit::header(m, "id"))
            .collect()
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(ids_of("a"), [a1.to_string(), a2.to_string()]);
    assert_eq!(ids_of("b"), [b1.to_string()]);
    assert_eq!(
        testkit::header(&messages[0], "schema-version").as_deref(),
        Some("1")
    );

    // Skip one: c/1 is never published, c/2 goes on.
    let c1 = write(&admin.pool, "c", true).await;
    let c2 = write(&admin.pool, "c", false).await;
    admin.wait_until_parked(c1).await;
    assert_eq!(
        admin
            .post(&format!("/admin/events/orders/{c1}/skip"))
            .await
            .status(),
        200
    );
    assert_eq!(admin.wait_until_done(c2).await, (true, false));
    assert_eq!(admin.wait_until_done(c1).await, (false, true));

    // Retry a whole aggregate.
    let d1 = write(&admin.pool, "d", true).await;
    admin.wait_until_parked(d1).await;
    admin.fix(d1).await;
    let response = admin.post("/admin/aggregates/orders/ping/d/retry").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["changed"], 1);
    assert_eq!(admin.wait_until_done(d1).await, (true, false));

    // Nothing left to act on, and unknown names are 404.
    assert!(admin.parked().await.is_empty());
    assert_eq!(
        admin
            .post(&format!("/admin/events/orders/{d1}/retry"))
            .await
            .status(),
        404
    );
    assert_eq!(
        admin
            .post(&format!("/admin/events/nowhere/{d1}/skip"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn parked_events_are_retried_in_bulk_by_filter() {
    let admin = spawn_relay().await;
    let e1 = write(&admin.pool, "e", true).await;
    let e2 = write(&admin.pool, "e", false).await;
    let f1 = write(&admin.pool, "f", true).await;
    let g1 = write(&admin.pool, "g", true).await;
    for id in [e1, f1, g1] {
        admin.wait_until_parked(id).await;
    }
    // g/1 was parked for another reason.
    sqlx::query("update outbox set last_error = 'topic refused by policy' where id = $1")
        .bind(g1)
        .execute(&admin.pool)
        .await
        .unwrap();
    let get = |query: &'static str| {
        let admin = &admin;
        async move {
            let response = admin
                .http
                .get(format!("{}/admin/parked?{query}", admin.service.address))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        get("error=policy").await,
        1,
        "the filter previews a bulk retry"
    );
    assert_eq!(get("database=orders").await, 3);

    // Filters that take nothing, or make no sense.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none: Value = admin
        .post(&format!("/admin/parked/retry?parked_from={later}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
    assert_eq!(
        admin
            .post("/admin/parked/retry?database=nowhere")
            .await
            .status(),
        404
    );
    let empty_range = admin
        .post(&format!(
            "/admin/parked/retry?parked_from={later}&parked_to={later}"
        ))
        .await;
    // An empty range is a filter like any other: it takes nothing.
    assert_eq!(empty_range.status(), 200);
    assert_eq!(empty_range.json::<Value>().await.unwrap()["total"], 0);
    assert_eq!(
        admin
            .post("/admin/parked/retry?parked_to=yesterday")
            .await
            .status(),
        400
    );

    // The too-large ones are fixed: retry those by their error; e/2 follows e/1.
    admin.fix(e1).await;
    admin.fix(f1).await;
    let retried: Value = admin
        .post("/admin/parked/retry?error=MessageSizeTooLarge")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(retried["total"], 2, "{retried}");
    assert_eq!(retried["databases"][0]["database"], "orders");
    for id in [e1, e2, f1] {
        assert_eq!(admin.wait_until_done(id).await, (true, false));
    }
    assert_eq!(admin.parked().await.len(), 1, "g/1 was not taken");

    // Everything else, unfiltered.
    admin.fix(g1).await;
    let rest: Value = admin
        .post("/admin/parked/retry")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["total"], 1);
    assert_eq!(admin.wait_until_done(g1).await, (true, false));
    assert!(admin.parked().await.is_empty());
}

#[tokio::test]
async fn the_status_page_shows_pending_parked_and_recent_events() {
    let admin = spawn_relay().await;
    let parked = write(&admin.pool, "p", true).await;
    let fine = write(&admin.pool, "q", false).await;
    admin.wait_until_parked(parked).await;
    admin.wait_until_done(fine).await;

    let status = testkit::get_json(
        &admin.http,
        format!("{}/status.json", admin.service.address),
    )
    .await;
    assert_eq!(status["publishing"]["state"], "publishing");
    let orders = &status["databases"][0];
    assert_eq!(orders["database"], "orders");
    assert_eq!(orders["stats"]["parked"], 1);
    assert_eq!(orders["stats"]["pending"], 0);
    assert!(orders["stats"]["published_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(orders["recent"].as_array().unwrap().len(), 2);

    let page = admin
        .http
        .get(format!("{}/", admin.service.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<h2>orders</h2>"));
    assert!(html.contains(&parked.to_string()));
    assert!(html.contains("class=parked>parked"));

    // The public page shows states, never an event's error text: that is for the admin side.
    let error: String = sqlx::query_scalar("select last_error from outbox where id = $1")
        .bind(parked)
        .fetch_one(&admin.pool)
        .await
        .unwrap();
    assert!(!error.is_empty());
    assert!(!html.contains(&error), "the page shows {error:?}");
    assert!(
        !status.to_string().contains(&error),
        "status.json shows {error:?}"
    );

    let metrics = admin
        .http
        .get(format!("{}/metrics", admin.service.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outbox_published_total"), "{metrics}");
    assert!(metrics.contains("outbox_publish_latency_seconds"));

    let doc = testkit::get_json(
        &admin.http,
        format!("{}/openapi.json", admin.service.address),
    )
    .await;
    assert!(
        doc["paths"]["/admin/events/{database}/{id}/skip"]["post"]["responses"]["401"].is_object()
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn a_commit_wakes_the_relay_without_waiting_for_the_poll() {
    // Polling alone would take a minute; NOTIFY at commit makes it immediate.
    let admin = spawn_relay_polling_every(Duration::from_secs(60)).await;
    // Let the relay's first (empty) batch pass, so only a notification can wake it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = write(&admin.pool, "n", false).await;
    let started = std::time::Instant::now();
    admin.wait_until_done(id).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hostile_admin_requests_get_problems_not_server_errors() {
    let admin = spawn_relay().await;
    let base = &admin.service.address;
    let http = &admin.http;

    // A NUL character (PostgreSQL refuses it in text) names nothing: 404, not 500.
    let nul_path = answer(
        http.post(format!("{base}/admin/aggregates/orders/order/%00/retry"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert!(nul_path.is_problem(404), "{nul_path:?}");
    let nul_query = answer(
        http.get(format!("{base}/admin/parked?error=%00"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert!(nul_query.is_problem(400), "{nul_query:?}");

    // A database that does not exist is a 404, as on every other admin route.
    let nosuch = answer(
        http.get(format!("{base}/admin/parked?database=nosuch"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(nosuch.status, 404, "{nosuch:?}");

    // The scheme's name is case-insensitive (RFC 9110); the token is not.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let listed = answer(
            http.get(format!("{base}/admin/parked"))
                .header("authorization", format!("{scheme} {TOKEN}")),
        )
        .await;
        assert_eq!(listed.status, 200, "{scheme}: {listed:?}");
    }
    let wrong_case = answer(
        http.get(format!("{base}/admin/parked"))
            .header("authorization", format!("Bearer {}", TOKEN.to_uppercase())),
    )
    .await;
    assert_eq!(wrong_case.status, 401);

    // A method the route does not take: 405 problem, with the methods it does take.
    let not_allowed = answer(
        http.delete(format!("{base}/admin/parked"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert!(not_allowed.is_problem(405), "{not_allowed:?}");
    assert_eq!(not_allowed.allow.as_deref(), Some("GET,HEAD"));
}

#[tokio::test]
async fn a_held_relay_publishes_nothing_until_resumed_then_everything_in_order() {
    let admin = spawn_relay().await;
    let anonymous = admin
        .http
        .post(format!("{}/admin/relay/pause", admin.service.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Events of several aggregates, written before and while the relay is held.
    let before = write(&admin.pool, "held-0", false).await;
    let paused: Value = admin.post("/admin/relay/pause").await.json().await.unwrap();
    assert_eq!(paused["relay"], "held");
    let again: Value = admin.post("/admin/relay/pause").await.json().await.unwrap();
    assert_eq!(again["was"], "held", "pausing twice is harmless");
    let mut held = Vec::new();
    for i in 0..9 {
        held.push(write(&admin.pool, &format!("held-{}", i % 3), false).await);
    }
    let status: Value = testkit::get_json(
        &admin.http,
        format!("{}/status.json", admin.service.address),
    )
    .await;
    assert_eq!(status["relay"], "held");

    // Ten claim intervals (poll 100 ms, plus every commit's NOTIFY): nothing written after
    // the pause went out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let published: i64 = sqlx::query_scalar(
        "select count(*) from outbox where id = any($1) and published_at is not null",
    )
    .bind(&held)
    .fetch_one(&admin.pool)
    .await
    .unwrap();
    assert_eq!(published, 0, "a held relay published");

    let resumed: Value = admin
        .post("/admin/relay/resume")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&resumed["relay"], &resumed["was"]),
        (&"relaying".into(), &"held".into())
    );
    for id in std::iter::once(before).chain(held.iter().copied()) {
        assert_eq!(admin.wait_until_done(id).await, (true, false));
    }
    // Per aggregate, the events reached Kafka in the order they were written.
    let topic = admin.kafka.topic_for(Pinged::AGGREGATE_TYPE);
    let messages = testkit::read_topic(&admin.kafka, &topic, held.len() + 1, WAIT).await;
    assert_eq!(messages.len(), held.len() + 1);
    let mut last: std::collections::HashMap<Vec<u8>, Uuid> = Default::default();
    for m in &messages {
        let id: Uuid = testkit::header(m, "id")
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap();
        if let Some(previous) = last.insert(m.key().unwrap().to_vec(), id) {
            assert!(previous < id, "{id} overtook {previous}");
        }
    }
}
