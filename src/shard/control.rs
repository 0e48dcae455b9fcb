//! Signals: the first SIGTERM/SIGINT asks every shard to drain, a second exits at once.
//! A small unpinned executor waits for signals on glommio's blocking pool and reaches the shards
//! over bounded SPSC channels, like any other cross-core message.

use glommio::channels::shared_channel::{ConnectedSender, SharedSender};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What the control executor tells a shard.
#[derive(Debug, Clone, Copy)]
pub(super) enum Command {
    Drain,
}

/// Registers the signal handlers (call before any executor starts).
pub(super) fn signals() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT])
}

pub(super) async fn run(signals: Signals, shards: Vec<SharedSender<Command>>) {
    let mut senders: Vec<ConnectedSender<Command>> = Vec::with_capacity(shards.len());
    for s in shards {
        senders.push(s.connect().await);
    }
    let (first, signals) = wait(signals).await;
    log::info!("received {}: draining (a second signal exits at once)", name(first));
    for s in &senders {
        let _ = s.send(Command::Drain).await;
    }
    let (second, _) = wait(signals).await;
    log::warn!("received {} again: exiting without draining", name(second));
    std::process::exit(1);
}

async fn wait(mut signals: Signals) -> (i32, Signals) {
    glommio::executor()
        .spawn_blocking(move || {
            let sig = signals.forever().next().unwrap_or(SIGTERM);
            (sig, signals)
        })
        .await
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
