//! Signals: the first SIGTERM/SIGINT asks every shard to drain, a second exits at once; SIGHUP
//! re-reads the TLS certificate and key and hands the new configuration to every shard (new
//! connections use it; established ones keep theirs). A small unpinned executor looks for
//! signals every `SIGNAL_POLL` and reaches the shards over bounded SPSC channels, like any other
//! cross-core message. (It used to wait for them on glommio's blocking pool; in runs of 63 nodes
//! on one box a node now and then never woke from that wait and ignored SIGTERM.)

use std::sync::Arc;
use std::time::Duration;

use glommio::channels::shared_channel::{ConnectedSender, SharedSender};
use rustls::ServerConfig;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;

/// What the control executor tells a shard.
#[derive(Debug, Clone)]
pub(super) enum Command {
    Drain,
    /// New connections on the main listener use this TLS configuration.
    Tls(Arc<ServerConfig>),
}

/// How often the control executor looks for signals that arrived.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Registers the signal handlers (call before any executor starts).
pub(super) fn signals() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

pub(super) async fn run(mut signals: Signals, shards: Vec<SharedSender<Command>>, cfg: Config) {
    let mut senders: Vec<ConnectedSender<Command>> = Vec::with_capacity(shards.len());
    for s in shards {
        senders.push(s.connect().await);
    }
    let mut draining = false;
    loop {
        let sig = wait(&mut signals).await;
        match sig {
            SIGHUP => reload(&cfg, &senders).await,
            _ if !draining => {
                draining = true;
                log::info!("received {}: draining (a second signal exits at once)", name(sig));
                for s in &senders {
                    let _ = s.send(Command::Drain).await;
                }
            }
            _ => {
                log::warn!("received {} again: exiting without draining", name(sig));
                std::process::exit(1);
            }
        }
    }
}

/// SIGHUP: a new TLS configuration for every shard, or the old one kept if the files are bad.
async fn reload(cfg: &Config, senders: &[ConnectedSender<Command>]) {
    if !cfg.tls() {
        log::info!("received SIGHUP: no TLS configured, nothing to reload");
        return;
    }
    let (cert, key) = (cfg.tls_cert.clone(), cfg.tls_key.clone());
    let loaded = {
        let cfg = cfg.clone();
        glommio::executor().spawn_blocking(move || cfg.load_tls()).await
    };
    match loaded {
        Ok(Some(config)) => {
            // Never waits: a shard that has stopped reading commands (draining) misses nothing.
            for s in senders {
                let _ = s.try_send(Command::Tls(config.clone()));
            }
            log::info!(
                "received SIGHUP: reloaded TLS certificate {cert} and key {key}; new connections use them"
            );
        }
        Ok(None) => {}
        Err(e) => log::error!("received SIGHUP: TLS reload failed, keeping the previous certificate: {e}"),
    }
}

/// The next signal that arrived (each one once, in the order signal-hook reports them).
async fn wait(signals: &mut Signals) -> i32 {
    loop {
        // `pending` takes only the signals it yields: others stay for the next call.
        if let Some(sig) = signals.pending().next() {
            return sig;
        }
        glommio::timer::sleep(SIGNAL_POLL).await;
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
