//! Test helpers (a dev-dependency, and the bench's): every test gets its own database and its own topics on
//! the real servers, so tests run in parallel without seeing each other.

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::FutureRecord,
    ClientConfig, Message, TopicPartitionList,
};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use outbox::kafka::KafkaConfig;

/// Admin connection used to create test databases.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Admin connection of the cluster with `wal_level=logical`, for the tests that read the WAL
/// (`scripts/stack test` starts it, as INFRA.md describes).
pub fn logical_admin_database_url() -> String {
    std::env::var("TEST_LOGICAL_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".to_owned())
}

pub fn mongo_uri() -> String {
    std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// A fresh, empty database named `outbox_test_<uuid>`; returns its URL. The test command
/// drops leftovers of earlier runs before it starts.
pub async fn fresh_database() -> SecretString {
    fresh_database_at(&admin_database_url()).await
}

async fn fresh_database_at(admin: &str) -> SecretString {
    let name = format!("outbox_test_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(admin).await.unwrap_or_else(|e| {
        panic!("the test PostgreSQL server {admin} must be running (scripts/stack infra-up): {e}")
    });
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    SecretString::from(format!("{base}/{name}"))
}

/// [`fresh_database`] on the logical cluster ([`logical_admin_database_url`]), for a relay that
/// reads the WAL.
pub async fn fresh_logical_database() -> SecretString {
    fresh_database_at(&logical_admin_database_url()).await
}

/// Drops a database made by [`fresh_database`], whoever is still connected to it: for long
/// runs (the benchmarks) that would otherwise leave hundreds behind, which PostgreSQL's
/// autovacuum then visits in turn.
pub async fn drop_database(url: &SecretString) {
    use secrecy::ExposeSecret;
    let Some((_, name)) = url.expose_secret().rsplit_once('/') else {
        return;
    };
    let Ok(mut conn) = PgConnection::connect(&admin_database_url()).await else {
        return;
    };
    let _ = sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
        .execute(&mut conn)
        .await;
}

/// A fresh database with only the shared tables (outbox, inbox), for relay tests: its URL and
/// a pool on it.
pub async fn fresh_outbox_database() -> (SecretString, sqlx::PgPool) {
    outbox_database(fresh_database().await).await
}

/// [`fresh_outbox_database`] on the logical cluster ([`logical_admin_database_url`]).
pub async fn fresh_logical_outbox_database() -> (SecretString, sqlx::PgPool) {
    outbox_database(fresh_logical_database().await).await
}

async fn outbox_database(url: SecretString) -> (SecretString, sqlx::PgPool) {
    let pool = outbox::db::connect(&url, 10)
        .await
        .expect("connect to test database");
    let no_service_tables = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Borrowed(&[]),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    outbox::db::migrate(&pool, &no_service_tables)
        .await
        .expect("migrate test database");
    (url, pool)
}

/// Settings for a PostgreSQL-backed service under test: port 0, a fresh database, own topics.
pub async fn postgres_service_config() -> service_kit::config::PostgresServiceConfig {
    service_kit::config::PostgresServiceConfig {
        http: service_kit::config::HttpConfig::local(0),
        database_url: fresh_database().await,
        database_max_connections: 5,
        kafka: kafka(),
        writer: outbox::Writer::default(),
    }
}

/// A service a test started in the background; it is shut down when this is dropped.
pub struct Spawned {
    pub address: String,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Spawned {
    /// Runs `run(shutdown)` on the test's runtime; `port` is the one the service bound.
    pub fn spawn<F>(port: u16, run: impl FnOnce(tokio_util::sync::CancellationToken) -> F) -> Self
    where
        F: Future<Output = Result<(), service_kit::StartupError>> + Send + 'static,
    {
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(run(shutdown.clone()));
        Self {
            address: format!("http://127.0.0.1:{port}"),
            shutdown,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Kafka settings with a unique topic prefix, so this test's topics are its own.
pub fn kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned()),
        topic_prefix: format!("test-{}.", Uuid::new_v4().simple()),
        partitions: 3,
        assignment: outbox::kafka::Assignment::Group,
        fetch_wait_ms: service_kit::config::var(
            "KAFKA_FETCH_WAIT_MS",
            outbox::kafka::DEFAULT_FETCH_WAIT_MS,
        )
        .expect("KAFKA_FETCH_WAIT_MS"),
        debug: None,
    }
}

/// Produces one raw message (tests use it to inject duplicates and malformed messages).
pub async fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) {
    outbox::kafka::ensure_topics(kafka, &[topic.to_owned()])
        .await
        .expect("create topic");
    let producer = outbox::kafka::producer(kafka).expect("producer");
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload).headers(h),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce test message");
}

/// Reads every message of `topic` from the beginning until `expected` arrived or `timeout`
/// passed (then returns what it has). Uses a throwaway consumer with assigned partitions.
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    outbox::kafka::ensure_topics(kafka, &[topic.to_owned()])
        .await
        .expect("create topic");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    let mut assignment = TopicPartitionList::new();
    for p in 0..kafka.partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < expected {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// The value of a header of a read message.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP client for talking to an app a test spawned.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// GETs `url` and reads the body as JSON, whatever the status.
pub async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// What a test reads off an HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Empty when the answer has none.
    pub content_type: String,
    pub allow: Option<String>,
    /// `null` when the body is not JSON.
    pub body: serde_json::Value,
}

impl Answer {
    /// Whether this is a problem+json answer with `status`, in its header and its body.
    pub fn is_problem(&self, status: u16) -> bool {
        self.status == status
            && self.content_type == "application/problem+json"
            && self.body["status"] == status
    }
}

/// Sends `request` and reads its answer, whatever the status.
pub async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request sent");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, allow) = (header("content-type").unwrap_or_default(), header("allow"));
    Answer {
        status: response.status().as_u16(),
        content_type,
        allow,
        body: response.json().await.unwrap_or_default(),
    }
}

/// Publishes `event` with id `id` the way the relay would (key = aggregate id).
pub async fn publish_event<E: outbox::DomainEvent>(kafka: &KafkaConfig, id: Uuid, event: &E) {
    publish_event_with_key(kafka, &event.aggregate_id(), id, event).await;
}

/// Same, under another key. Messages with one key share a partition and are consumed in
/// order, so a test publishes a later "sentinel" event under the key of the events it
/// checks: once the sentinel is processed, everything before it was too.
pub async fn publish_event_with_key<E: outbox::DomainEvent>(
    kafka: &KafkaConfig,
    key: &str,
    id: Uuid,
    event: &E,
) {
    let payload = serde_json::to_vec(event).expect("event to JSON");
    let id = id.to_string();
    let topic = kafka.topic_for(E::AGGREGATE_TYPE);
    produce(
        kafka,
        &topic,
        key,
        &payload,
        &[("id", &id), ("type", E::TYPE)],
    )
    .await;
}

/// Reads the payload of a message as JSON.
pub fn json(message: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(message.payload().unwrap_or_default()).expect("JSON payload")
}

/// One handler run: which instance of a consumer handled a message of which key, and when.
#[derive(Debug, Clone)]
pub struct Handling {
    pub key: String,
    pub instance: String,
    pub started: Instant,
    pub finished: Instant,
}

/// Two handlings of one key by different instances at the same time (earlier, later), if
/// any: a partition handed over before its old owner was done with it.
pub fn overlap(log: &[Handling]) -> Option<(Handling, Handling)> {
    let mut by_key: HashMap<&str, Vec<&Handling>> = HashMap::new();
    for handling in log {
        by_key.entry(&handling.key).or_default().push(handling);
    }
    for (_, mut handlings) in by_key {
        handlings.sort_by_key(|h| h.started);
        // Per instance, its handling of this key that finished last so far.
        let mut latest: HashMap<&str, &Handling> = HashMap::new();
        for later in handlings {
            let overlapped = latest.values().find(|earlier| {
                earlier.instance != later.instance && earlier.finished > later.started
            });
            if let Some(earlier) = overlapped {
                return Some(((*earlier).clone(), later.clone()));
            }
            let last = latest.entry(&later.instance).or_insert(later);
            if later.finished > last.finished {
                *last = later;
            }
        }
    }
    None
}
