//! The status page at `/` (for people, refreshes itself) and `/status.json` (for scripts):
//! per database, what waits, how old the oldest waiting event is, how fast events go out,
//! what is parked, and the latest events.
//!
//! Both are open to anyone who reaches the port, so they show states and counts, never an
//! event's error text (which may quote a broker's or a database's address): that is on the
//! admin side, `GET /admin/parked`, behind the token.

use std::fmt::Write;

use axum::{extract::State, response::Html, routing::get, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use service_kit::http::{Json, Problem};
use uuid::Uuid;

use outbox::relay::{PublishingState, Stats, Switch};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(json))
        .with_state(state)
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RecentEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub aggregateid: String,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    /// `published`, `skipped`, `parked`, `retrying` or `pending`; in WAL mode, `streamed` for
    /// an event handed to the stream, whose fate is in no row (the pending count has those
    /// not yet published), and the held table's state for a held one.
    pub state: String,
}

/// The latest 15 events of the outbox. An event the WAL relay holds has its fate in
/// `outbox_wal_held`, which takes precedence; the polling relay never writes there.
async fn recent_events(pool: &sqlx::PgPool, wal: bool) -> Result<Vec<RecentEvent>, sqlx::Error> {
    sqlx::query_as(
        "select o.id, o.type as event_type, o.aggregateid, o.created_at,
                coalesce(h.published_at, o.published_at) as published_at,
                coalesce(h.attempts, o.attempts) as attempts,
                case when h.published_at is not null then 'published'
                     when h.skipped_at is not null then 'skipped'
                     when h.parked_at is not null then 'parked'
                     when h.attempts > 0 then 'retrying'
                     when h.id is not null then 'pending'
                     when o.published_at is not null then 'published'
                     when o.skipped_at is not null then 'skipped'
                     when o.parked_at is not null then 'parked'
                     when o.attempts > 0 then 'retrying'
                     when $1 then 'streamed'
                     else 'pending' end as state
         from outbox o left join outbox_wal_held h on h.id = o.id
         order by o.seq desc limit 15",
    )
    .bind(wal)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatabaseStatus {
    pub database: String,
    /// `None` when the database could not be read; `error` says so (the relay's log says why).
    pub stats: Option<Stats>,
    pub recent: Vec<RecentEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Publishing, or paused because the broker is away (no event spends attempts meanwhile).
    pub publishing: PublishingState,
    /// Relaying, or held by an operator (`POST /admin/relay/pause`).
    pub relay: Switch,
    pub databases: Vec<DatabaseStatus>,
}

async fn status(state: &AppState) -> Status {
    let mut databases = Vec::new();
    for relay in state.relays.databases().iter() {
        let stats = relay.stats().await;
        let wal = stats.as_ref().is_ok_and(|s| s.log.is_some());
        let recent = recent_events(relay.pool(), wal).await;
        let failed = match (&stats, &recent) {
            (Err(e), _) => Some(e.to_string()),
            (_, Err(e)) => Some(e.to_string()),
            _ => None,
        };
        let error = failed.map(|error| {
            tracing::warn!(database = %relay.name, %error, "status: cannot read the database");
            "cannot read this database; the relay's log says why".to_owned()
        });
        databases.push(DatabaseStatus {
            database: relay.name.clone(),
            stats: stats.ok(),
            recent: recent.unwrap_or_default(),
            error,
        });
    }
    Status {
        publishing: state.relays.outlet().outage.state(),
        relay: state.relays.outlet().hold.state(),
        databases,
    }
}

/// The status page's numbers, per database.
#[utoipa::path(get, path = "/status.json", tag = "operations",
    responses((status = 200, description = "Pending, parked, rates and recent events per database", body = Status)))]
pub async fn json(State(state): State<AppState>) -> Result<Json<Status>, Problem> {
    Ok(Json(status(&state).await))
}

async fn page(State(state): State<AppState>) -> Html<String> {
    let status = status(&state).await;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=2>\
         <title>outbox relay</title><style>\
         body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse;margin:.5em 0 2em}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
         .n{font-size:2em;font-weight:600}.parked,.retrying{color:#b00}.published{color:#070}\
         .cards{display:flex;gap:2em}.card{padding:.8em 1.2em;border:1px solid #ddd;border-radius:6px}\
         </style></head><body><h1>Outbox relay</h1>\
         <p>Refreshes every 2 s. JSON: <a href=/status.json>/status.json</a>, \
         Prometheus: <a href=/metrics>/metrics</a>. Errors of parked events: \
         <code>GET /admin/parked</code> (admin token).</p>",
    );
    if let PublishingState::Paused { since, .. } = &status.publishing {
        let _ = write!(
            html,
            "<p class=parked>Broker unavailable since {}: publishing paused, no event spends \
             attempts; it resumes on its own. The relay's log has the broker's error.</p>",
            since.format("%H:%M:%S"),
        );
    }
    if status.relay == Switch::Held {
        html.push_str(
            "<p class=parked>Held by an operator: events wait in the outbox until \
             <code>POST /admin/relay/resume</code>.</p>",
        );
    }
    for db in &status.databases {
        let _ = write!(html, "<h2>{}</h2>", escape(&db.database));
        if let Some(error) = &db.error {
            let _ = write!(html, "<p class=parked>{}</p>", escape(error));
        }
        if let Some(s) = &db.stats {
            let _ = write!(
                html,
                "<div class=cards>\
                 <div class=card><div class=n>{}</div>pending</div>\
                 <div class=card><div class=n>{:.1} s</div>oldest pending</div>\
                 <div class=card><div class=n>{:.1}/s</div>published (last 10 s)</div>\
                 <div class=card><div class='n{}'>{}</div>parked</div></div>",
                s.pending,
                s.oldest_pending_age_seconds,
                s.published_per_second,
                if s.parked > 0 { " parked" } else { "" },
                s.parked
            );
            if let Some(log) = &s.log {
                let _ = write!(
                    html,
                    "<p>Read from the WAL: reader <b>{:?}</b>, {} read ahead; the slot holds \
                     <b>{}</b> of WAL and trails the newest commit by {}.</p>",
                    log.reader,
                    log.read_ahead,
                    bytes(log.retained_bytes),
                    bytes(log.lag_bytes),
                );
            }
        }
        html.push_str(
            "<table><tr><th>event</th><th>type</th><th>aggregate</th><th>created</th>\
             <th>state</th><th>attempts</th></tr>",
        );
        for e in &db.recent {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td>\
                 <td class={}>{}</td><td>{}</td></tr>",
                e.id,
                escape(&e.event_type),
                escape(&e.aggregateid),
                e.created_at.format("%H:%M:%S%.3f"),
                e.state,
                e.state,
                e.attempts,
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Html(html)
}

/// `n` bytes as a person reads them.
fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(43 * 1024), "43.0 kB");
        assert_eq!(super::bytes(52 * 1024 * 1024 + 512 * 1024), "52.5 MB");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
