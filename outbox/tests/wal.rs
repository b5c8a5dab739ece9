//! Reading the outbox from the WAL, on the logical cluster (`TEST_LOGICAL_DATABASE_URL`):
//! every committed insert once, in commit order and as the table holds it, nothing rolled
//! back, the slot's position moved only by what was confirmed, and one reader per slot.

use std::time::Duration;

use outbox::{
    relay::PendingEvent,
    wal::{slot, Lsn, OutboxStream, SlotCreated, StreamConfig, WalError, WalEvent},
    AfterInsert, DomainEvent, Writer,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
struct Noted {
    account: String,
    n: usize,
    note: String,
}

impl DomainEvent for Noted {
    const TYPE: &'static str = "Noted";
    const AGGREGATE_TYPE: &'static str = "account";
    fn aggregate_id(&self) -> String {
        self.account.clone()
    }
}

/// A database with the outbox on the logical cluster, its publication and slot.
async fn database() -> (SecretString, PgPool, String) {
    let (url, pool) = testkit::fresh_logical_outbox_database().await;
    let name = format!("test_{}", Uuid::new_v4().simple());
    slot::ensure_publication(&pool, &name).await.unwrap();
    assert_eq!(
        slot::ensure_slot(&pool, &name).await.unwrap(),
        SlotCreated::Created
    );
    assert_eq!(
        slot::ensure_slot(&pool, &name).await.unwrap(),
        SlotCreated::Existing
    );
    slot::ensure_publication(&pool, &name).await.unwrap();
    (url, pool, name)
}

/// Writes `count` events of `account` in one transaction, and commits it unless told not to.
async fn write(
    pool: &PgPool,
    writer: Writer,
    account: &str,
    count: usize,
    commit: bool,
) -> Vec<Uuid> {
    let mut tx = pool.begin().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let event = Noted {
            account: account.into(),
            n,
            note: NOTE.into(),
        };
        ids.push(
            writer
                .write_in_tx(&mut tx, &event, Some(TRACE))
                .await
                .unwrap(),
        );
    }
    if commit {
        tx.commit().await.unwrap();
    }
    ids
}

const NOTE: &str = "ünïcode \"quoted\" \\ back";
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The rows as the polling relay reads them (`payload::text`).
async fn rows(pool: &PgPool) -> Vec<PendingEvent> {
    sqlx::query_as(
        "select id, aggregatetype, aggregateid, type, payload::text as payload,
                tracingspancontext, schema_version, seq, attempts, created_at
         from outbox order by seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Transactions off the stream until `count` of them committed: each one's commit position,
/// its events, and its end.
async fn transactions(
    stream: &mut OutboxStream,
    count: usize,
) -> Vec<(Lsn, Vec<PendingEvent>, Lsn)> {
    let mut done = Vec::new();
    let mut open: Option<(Lsn, Vec<PendingEvent>)> = None;
    while done.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a transaction within 20 s")
            .unwrap()
            .expect("the stream goes on");
        match event {
            WalEvent::Begin { commit, .. } => {
                assert!(open.is_none(), "Begin inside a transaction");
                open = Some((commit, Vec::new()));
            }
            WalEvent::Event(e) => open
                .as_mut()
                .expect("an event outside a transaction")
                .1
                .push(e),
            WalEvent::Commit { commit, end } => {
                let (begun, events) = open.take().expect("Commit without Begin");
                assert_eq!(begun, commit);
                assert!(end > commit);
                done.push((commit, events, end));
            }
            WalEvent::Idle { .. } => assert!(open.is_none(), "Idle inside a transaction"),
        }
    }
    done
}

/// Until the server let go of the slot: a stopped reader's walsender ends a moment later,
/// and only then has it read the reader's last status for sure. Returns the position the
/// slot was left at.
async fn released(pool: &PgPool, name: &str) -> Lsn {
    testkit::eventually(Duration::from_secs(10), || async {
        let state = slot::slot_state(pool, name).await.unwrap()?;
        state.active_pid.is_none().then_some(state.confirmed)
    })
    .await
    .expect("the slot is released within 10 s of its reader's stop")
    .expect("a logical slot has a confirmed position")
}

async fn start(url: &SecretString, name: &str) -> Result<OutboxStream, WalError> {
    OutboxStream::start(&StreamConfig::new(url.clone(), name)).await
}

#[tokio::test]
async fn committed_inserts_arrive_once_in_commit_order_as_the_table_holds_them() {
    for (first, second) in [(1, 3), (4, 2)] {
        let (url, pool, name) = database().await;
        let keep = Writer::default();
        // `a` begins first and commits last; a rolled-back transaction and a table that is
        // not the outbox write in between.
        let mut a = pool.begin().await.unwrap();
        for n in 0..first {
            let event = Noted {
                account: "a".into(),
                n,
                note: "first begun".into(),
            };
            keep.write_in_tx(&mut a, &event, None).await.unwrap();
        }
        write(&pool, keep, "b", second, true).await;
        write(&pool, keep, "rolled-back", 2, false).await;
        sqlx::raw_sql("create table other (id int); insert into other values (1)")
            .execute(&pool)
            .await
            .unwrap();
        a.commit().await.unwrap();

        let mut stream = start(&url, &name).await.unwrap();
        let got = transactions(&mut stream, 2).await;
        let table = rows(&pool).await;
        let by_account = |account: &str| -> Vec<PendingEvent> {
            table
                .iter()
                .filter(|e| e.aggregateid == account)
                .cloned()
                .collect()
        };
        assert_eq!(got[0].1, by_account("b"), "b committed first");
        assert_eq!(got[1].1, by_account("a"));
        assert!(got[0].0 < got[1].0);
        assert_eq!(got[0].1.len() + got[1].1.len(), table.len());
        assert!(got[0]
            .1
            .iter()
            .all(|e| e.tracingspancontext.as_deref() == Some(TRACE)));
        stream.stop().await.unwrap();
        slot::drop_slot(&pool, &name).await.unwrap();
    }
}

#[tokio::test]
async fn a_removed_row_is_still_read_from_the_wal() {
    let (url, pool, name) = database().await;
    let ids = write(&pool, Writer::new(AfterInsert::Remove), "gone", 3, true).await;
    assert!(rows(&pool).await.is_empty(), "the writer removed its rows");
    let mut stream = start(&url, &name).await.unwrap();
    let got = transactions(&mut stream, 1).await;
    assert_eq!(got[0].1.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    let payload: serde_json::Value = serde_json::from_str(&got[0].1[2].payload).unwrap();
    assert_eq!(payload["n"], 2);
    assert_eq!(payload["note"], NOTE);
    stream.stop().await.unwrap();
    slot::drop_slot(&pool, &name).await.unwrap();
}

#[tokio::test]
async fn a_restart_reads_again_exactly_what_was_not_confirmed() {
    for (transactions_written, confirmed) in [(3, 1), (4, 3), (2, 0)] {
        let (url, pool, name) = database().await;
        for t in 0..transactions_written {
            write(&pool, Writer::default(), &format!("t{t}"), 2, true).await;
        }
        let mut stream = start(&url, &name).await.unwrap();
        let first = transactions(&mut stream, transactions_written).await;
        if confirmed > 0 {
            stream.confirm(first[confirmed - 1].2);
        }
        stream.stop().await.unwrap();
        let flushed = released(&pool, &name).await;
        if confirmed > 0 {
            assert_eq!(
                flushed,
                first[confirmed - 1].2,
                "the slot is where it was confirmed"
            );
        } else {
            assert!(flushed < first[0].0, "nothing confirmed, nothing passed");
        }
        let mut again = start(&url, &name).await.unwrap();
        let second = transactions(&mut again, transactions_written - confirmed).await;
        assert_eq!(
            second.iter().map(|t| &t.1).collect::<Vec<_>>(),
            first[confirmed..].iter().map(|t| &t.1).collect::<Vec<_>>(),
            "after confirming {confirmed} of {transactions_written}"
        );
        again.stop().await.unwrap();
        slot::drop_slot(&pool, &name).await.unwrap();
    }
}

#[tokio::test]
async fn one_reader_holds_a_slot_and_the_next_takes_it_when_it_goes() {
    let (url, pool, name) = database().await;
    let holder = start(&url, &name).await.unwrap();
    match start(&url, &name).await {
        Err(WalError::SlotInUse(_)) => {}
        Err(other) => panic!("a second reader failed otherwise: {other}"),
        Ok(_) => panic!("a second reader streams from a held slot"),
    }
    let active = slot::slot_state(&pool, &name)
        .await
        .unwrap()
        .unwrap()
        .active_pid;
    assert!(active.is_some());
    // Dropped without stopping, as a killed process leaves it.
    drop(holder);
    let taken = testkit::eventually(Duration::from_secs(10), || async {
        start(&url, &name).await.ok()
    })
    .await
    .expect("the slot is free again within 10 s");
    taken.stop().await.unwrap();
    slot::drop_slot(&pool, &name).await.unwrap();
}

#[tokio::test]
async fn a_quiet_slot_moves_on_with_heartbeats() {
    let (url, pool, name) = database().await;
    let mut stream = start(&url, &name).await.unwrap();
    let before = slot::heartbeat(&pool).await.unwrap();
    // Well before the server's own keepalive (every 30 s on a quiet connection): the
    // heartbeat's message is what moves it.
    let idle = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Ok(Some(WalEvent::Idle { position })))
                if position.as_u64() + 1024 >= before.as_u64() =>
            {
                break position
            }
            Ok(Ok(Some(WalEvent::Idle { .. }))) => continue,
            other => panic!("expected the heartbeat, got {other:?}"),
        }
    };
    stream.confirm(idle);
    stream.stop().await.unwrap();
    let confirmed = released(&pool, &name).await;
    // The message's position is where its record starts; the function returns its end.
    assert!(
        confirmed.as_u64() + 1024 >= before.as_u64(),
        "{confirmed} long before {before}"
    );
    slot::drop_slot(&pool, &name).await.unwrap();
}

#[tokio::test]
async fn names_that_are_not_safe_sql_are_refused() {
    for bad in [
        "",
        "Upper",
        "semi;colon",
        "quote'",
        "1relay",
        &"x".repeat(64),
    ] {
        assert!(
            matches!(slot::check_name(bad), Err(WalError::BadName(_))),
            "{bad:?}"
        );
    }
    slot::check_name("outbox_relay_1").unwrap();
    slot::check_name("_order").unwrap();
}

#[tokio::test]
async fn a_connection_the_stream_cannot_make_as_asked_is_refused() {
    for url in [
        "postgres://postgres@127.0.0.1:5433/postgres?sslmode=require",
        "postgres://postgres@127.0.0.1:5433/postgres?host=/var/run/postgresql",
        "postgres://127.0.0.1:5433/postgres",
    ] {
        match start(&SecretString::from(url), "any_slot").await {
            Err(WalError::BadUrl(_)) => {}
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url} streamed"),
        }
    }
}

#[tokio::test]
async fn a_slot_name_another_database_holds_is_an_error_of_its_own() {
    let (_, pool, name) = database().await;
    let (_, other, other_name) = database().await;
    match slot::ensure_slot(&other, &name).await {
        Err(WalError::SlotElsewhere(n)) => assert_eq!(n, name),
        other => panic!("{other:?}"),
    }
    slot::drop_slot(&pool, &name).await.unwrap();
    slot::drop_slot(&other, &other_name).await.unwrap();
}
