//! The webhook dispatcher and delivery threads.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{COUNTERS, Sink};
use crate::pusher::apps::App;
use crate::pusher::hook_targets::Webhook;
use crate::pusher::wire::Hook;

/// Most events in one POST.
const MAX_EVENTS_PER_BODY: usize = 100;
/// Batches waiting per URL before new ones are dropped.
const URL_QUEUE: usize = 1024;
/// How long a batch is retried: receivers (the Python SDK) reject bodies older than 5 minutes.
const MAX_AGE: Duration = Duration::from_secs(280);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

struct Batch {
    body: String,
    signature: String,
    events: u64,
    created: Instant,
}

/// One receiver's queue and what it wants.
struct Route {
    tx: SyncSender<Batch>,
    target: Webhook,
}

/// The fields of an event a receiver's filter looks at.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<std::borrow::Cow<'a, str>>,
}

/// Whether `target` wants the event `event` (JSON text).
fn wanted(target: &Webhook, event: &str) -> bool {
    match serde_json::from_str::<Head>(event) {
        Ok(h) => target.wants(&h.name, h.channel.as_deref()),
        Err(_) => false,
    }
}

/// Starts the dispatcher with one ring per core; returns the cores' ends (None when no app has
/// webhooks).
pub(crate) fn start(apps: &[App], cores: usize) -> Vec<Option<Sink>> {
    if apps.iter().all(|a| a.webhooks.is_empty()) {
        return (0..cores).map(|_| None).collect();
    }
    let (producers, consumers): (Vec<_>, Vec<_>) =
        (0..cores).map(|_| rtrb::RingBuffer::new(super::RING)).unzip();
    let mut routes: Vec<Vec<Route>> = Vec::new();
    for app in apps {
        let mut urls = Vec::new();
        for target in &app.webhooks {
            let (tx, rx) = sync_channel(URL_QUEUE);
            let (t, key) = (target.clone(), app.key.clone());
            std::thread::Builder::new()
                .name("corecast-webhook".into())
                .spawn(move || deliver(&t, &key, rx))
                .expect("spawn a webhook thread");
            urls.push(Route { tx, target: target.clone() });
        }
        routes.push(urls);
    }
    let secrets: Vec<String> = apps.iter().map(|a| a.secret.clone()).collect();
    std::thread::Builder::new()
        .name("corecast-webhooks".into())
        .spawn(move || dispatch(consumers, &routes, &secrets))
        .expect("spawn the webhook dispatcher");
    producers.into_iter().map(|p| Some(Sink(p))).collect()
}

fn dispatch(mut rings: Vec<rtrb::Consumer<Hook>>, routes: &[Vec<Route>], secrets: &[String]) {
    let mut by_app: HashMap<usize, Vec<String>> = HashMap::new();
    loop {
        let mut got = 0;
        for ring in &mut rings {
            while let Ok(hook) = ring.pop() {
                by_app.entry(hook.app.index()).or_default().push(hook.event);
                got += 1;
            }
        }
        for (app, events) in by_app.iter_mut() {
            if events.is_empty() {
                continue;
            }
            let secret = &secrets[*app];
            // Receivers of every event share each body; the others get their own selection.
            let everyone: Vec<&Route> = routes[*app].iter().filter(|r| !r.target.selective()).collect();
            if !everyone.is_empty() {
                let all: Vec<&str> = events.iter().map(String::as_str).collect();
                send_batches(&all, &everyone, secret);
            }
            for route in routes[*app].iter().filter(|r| r.target.selective()) {
                let mine: Vec<&str> =
                    events.iter().map(String::as_str).filter(|e| wanted(&route.target, e)).collect();
                send_batches(&mine, &[route], secret);
            }
            events.clear();
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Signs `events` in bodies of at most `MAX_EVENTS_PER_BODY` and queues each for `routes`.
fn send_batches(events: &[&str], routes: &[&Route], secret: &str) {
    for chunk in events.chunks(MAX_EVENTS_PER_BODY) {
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let (body, signature) = super::body(time_ms, chunk, secret);
        for route in routes {
            let batch = Batch {
                body: body.clone(),
                signature: signature.clone(),
                events: chunk.len() as u64,
                created: Instant::now(),
            };
            match route.tx.try_send(batch) {
                Ok(()) => {
                    COUNTERS.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                    COUNTERS.dropped.fetch_add(b.events, Ordering::Relaxed);
                }
            }
        }
    }
}

fn deliver(target: &Webhook, key: &str, rx: Receiver<Batch>) {
    let url = target.url.as_str();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(ATTEMPT_TIMEOUT))
        .http_status_as_error(false)
        .user_agent("corecast-webhooks")
        .build()
        .into();
    let mut last_warning: Option<Instant> = None;
    for batch in rx {
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut request = agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Pusher-Key", key)
                .header("X-Pusher-Signature", &batch.signature);
            for (name, value) in &target.headers {
                request = request.header(name, value);
            }
            let result = request.send(batch.body.as_str());
            match result {
                Ok(resp) if resp.status().is_success() => {
                    COUNTERS.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                other => {
                    COUNTERS.failed.fetch_add(1, Ordering::Relaxed);
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        let why = match other {
                            Ok(resp) => format!("status {}", resp.status()),
                            Err(e) => e.to_string(),
                        };
                        log::warn!("webhook to {url} failed ({why}); retrying with backoff");
                        last_warning = Some(Instant::now());
                    }
                    if batch.created.elapsed() + backoff > MAX_AGE {
                        COUNTERS.dropped.fetch_add(batch.events, Ordering::Relaxed);
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        COUNTERS.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_select_events_by_name_and_channel_as_serialized() {
        let mut t = Webhook::url("http://x/");
        t.event_types = vec!["client_event".into()];
        t.filter.channel_name_ends_with = Some("-b\"eta".into());
        let ev =
            serde_json::json!({"name": "client_event", "channel": "room-b\"eta", "data": {}}).to_string();
        assert!(wanted(&t, &ev), "escaped names are read whole");
        let other = serde_json::json!({"name": "member_added", "channel": "room-b\"eta"}).to_string();
        assert!(!wanted(&t, &other));
        assert!(!wanted(&t, "not json"));
    }
}
