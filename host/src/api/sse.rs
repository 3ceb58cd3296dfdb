//! Lifecycle events as server-sent events, and custom events published by clients.

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::events::{EventContext, EventReceiver, HookError, Outcome};

/// One event on `GET /api/events`: a lifecycle event (`kind: "lifecycle"`)
/// or one a client published with `POST /api/events` (`kind: "custom"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiEvent {
    /// Increasing per server run (the SSE `id`).
    pub seq: u64,
    pub kind: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// An [`EventReceiver`] that publishes every lifecycle event to the SSE
/// subscribers. It never refuses.
pub struct Broadcaster {
    pub(crate) state: super::State,
}

impl Broadcaster {
    pub(crate) fn publish(state: &super::State, kind: &str, event: &str, thread: Option<u32>, name: Option<String>, data: serde_json::Value) -> ApiEvent {
        let e = ApiEvent {
            seq: state.seq.fetch_add(1, Ordering::SeqCst) + 1,
            kind: kind.to_string(),
            event: event.to_string(),
            thread,
            name,
            at: Utc::now(),
            data,
        };
        // No subscriber is not an error.
        let _ = state.events.send(e.clone());
        e
    }
}

impl EventReceiver for Broadcaster {
    fn deliver(&self, ctx: &EventContext<'_>) -> Result<Outcome, HookError> {
        let data = serde_json::json!({ "branch": ctx.thread.branch, "status": ctx.thread.status, "ports": ctx.thread.port_block });
        Broadcaster::publish(&self.state, "lifecycle", ctx.event.as_str(), Some(ctx.thread.id), Some(ctx.thread.name.clone()), data);
        Ok(Outcome::default())
    }
}

/// The SSE stream: `event: <name>`, `id: <seq>`, `data: <ApiEvent JSON>`.
pub(crate) fn stream(state: &super::State) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.events.subscribe();
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(e) => {
                let json = serde_json::to_string(&e).unwrap_or_default();
                SseEvent::default().event(e.event.clone()).id(e.seq.to_string()).data(json)
            }
            Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(ev), rx))
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}
