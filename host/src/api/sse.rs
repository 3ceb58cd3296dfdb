//! `GET /api/events`: the repository's event log ([`crate::lifecycle::events`]) as
//! server-sent events.
//!
//! One task tails `events.jsonl` (from its end at server start) and
//! broadcasts each new line to the subscribers. Every event, whoever made
//! it (this server, the CLI, the plugin, an agent's supervisor, another
//! server), reaches them the same way: once, in `seq` order. A subscriber
//! that reconnects with `Last-Event-ID` first gets the events after that
//! `seq` still in the log.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};

use crate::lifecycle::{self, EventRecord, EventTail as Tail};

/// How often the log is looked at for new lines.
pub const POLL: Duration = Duration::from_millis(150);

/// Follow `tail` and send every new event to `tx` until `stop` turns true.
pub(crate) async fn tail(mut tail: Tail, tx: broadcast::Sender<EventRecord>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok((t, events)) = tokio::task::spawn_blocking(move || {
            let events = tail.poll();
            (tail, events)
        })
        .await
        else {
            return;
        };
        tail = t;
        for e in events {
            // No subscriber is not an error.
            let _ = tx.send(e);
        }
    }
}

fn frame(e: &EventRecord) -> SseEvent {
    let json = serde_json::to_string(e).unwrap_or_default();
    SseEvent::default().event(e.event.clone()).id(e.seq.to_string()).data(json)
}

/// The SSE stream: `event: <name>`, `id: <seq>`, `data: <event JSON>`;
/// with `last_id`, first the logged events after it. It ends when the
/// server shuts down, so open streams never hold up the shutdown.
pub(crate) async fn stream(state: &super::State, last_id: Option<u64>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribe before reading the log: an event is then in the replay, or
    // arrives on the channel (or both; the seq tells).
    let rx = state.events.subscribe();
    let replay = match last_id {
        Some(after) => match state.project() {
            Ok(project) => {
                tokio::task::spawn_blocking(move || lifecycle::events::read_after(&project, after)).await.ok().and_then(Result::ok).unwrap_or_default()
            }
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    let mut seen = replay.last().map(|e| e.seq).or(last_id).unwrap_or(0);
    let replay = futures_util::stream::iter(replay.iter().map(frame).map(Ok).collect::<Vec<_>>());
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(e) => Ok(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(n),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((ev, rx))
    })
    .filter_map(move |ev| {
        let out = match ev {
            Ok(e) if e.seq <= seen => None,
            Ok(e) => {
                seen = e.seq;
                Some(Ok(frame(&e)))
            }
            Err(n) => Some(Ok(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}")))),
        };
        std::future::ready(out)
    });
    let mut stop = state.shutdown.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Sse::new(replay.chain(live).take_until(stopped)).keep_alive(KeepAlive::default())
}
