//! The webhook dispatcher and delivery threads.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{COUNTERS, Sink};
use crate::pusher::apps::App;
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

/// Starts the dispatcher with one ring per core; returns the cores' ends (None when no app has
/// webhooks).
pub(crate) fn start(apps: &[App], cores: usize) -> Vec<Option<Sink>> {
    if apps.iter().all(|a| a.webhooks.is_empty()) {
        return (0..cores).map(|_| None).collect();
    }
    let (producers, consumers): (Vec<_>, Vec<_>) =
        (0..cores).map(|_| rtrb::RingBuffer::new(super::RING)).unzip();
    let mut routes: Vec<Vec<SyncSender<Batch>>> = Vec::new();
    for app in apps {
        let mut urls = Vec::new();
        for url in &app.webhooks {
            let (tx, rx) = sync_channel(URL_QUEUE);
            let (url, key) = (url.clone(), app.key.clone());
            std::thread::Builder::new()
                .name("corecast-webhook".into())
                .spawn(move || deliver(&url, &key, rx))
                .expect("spawn a webhook thread");
            urls.push(tx);
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

fn dispatch(mut rings: Vec<rtrb::Consumer<Hook>>, routes: &[Vec<SyncSender<Batch>>], secrets: &[String]) {
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
            for chunk in events.chunks(MAX_EVENTS_PER_BODY) {
                let time_ms =
                    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let (body, signature) = super::body(time_ms, chunk, &secrets[*app]);
                for url in &routes[*app] {
                    let batch = Batch {
                        body: body.clone(),
                        signature: signature.clone(),
                        events: chunk.len() as u64,
                        created: Instant::now(),
                    };
                    match url.try_send(batch) {
                        Ok(()) => {
                            COUNTERS.queued.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                            COUNTERS.dropped.fetch_add(b.events, Ordering::Relaxed);
                        }
                    }
                }
            }
            events.clear();
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn deliver(url: &str, key: &str, rx: Receiver<Batch>) {
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
            let result = agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Pusher-Key", key)
                .header("X-Pusher-Signature", &batch.signature)
                .send(batch.body.as_str());
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
