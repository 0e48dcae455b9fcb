//! corecast-load: benchmark corecast — or any Pusher-protocol server — with scenarios that
//! ramp, hold and stop, always bounded in count and time. See benches/README.md.

mod broadcast;
mod coord;
mod frames;
mod inflate_memo;
mod plan;
mod procstat;
mod publish;
mod recv;
mod recvbench;
mod report;
mod scenarios;
mod sends;
mod sign;
mod table;
mod wire;
mod worker;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use coord::Common;
use plan::Target;

#[derive(Parser, Debug)]
#[command(name = "corecast-load", about = "Load harness for Pusher-protocol servers")]
pub struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:6001", global = true)]
    pub server: SocketAddr,
    /// Where publishers send HTTP API requests [default: --server]; another node of a cluster
    /// makes every delivery cross nodes.
    #[arg(long, global = true)]
    pub publish_server: Option<SocketAddr>,
    /// Server process(es) to sample (RSS, CPU), comma-separated: several are summed (the nodes
    /// of a cluster sharing one port with --share-port); every process listening on the
    /// server's port when omitted.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// `pusher` (`/app/{key}`), `raw` (a plain WebSocket path, see --path) or `plain` (a plain
    /// WebSocket broadcast server such as benches/uws/broadcast.js: subscribers open --path,
    /// publishers --publish-path, `{channel}` replaced by the channel's name).
    #[arg(long, default_value = "pusher", global = true)]
    pub protocol: String,
    /// WebSocket path for `--protocol raw` [default: /echo] or the subscribers' path for
    /// `--protocol plain` [default: /sub/{channel}].
    #[arg(long, global = true)]
    pub path: Option<String>,
    /// The publishers' WebSocket path for `--protocol plain`.
    #[arg(long, default_value = "/pub/{channel}", global = true)]
    pub publish_path: String,
    /// Offer permessage-deflate (no context takeover) in every WebSocket handshake and inflate
    /// compressed frames (a server started with compression sends its events compressed). Each
    /// receive thread inflates a distinct compressed message once and recognises its copies
    /// by their bytes (a compress-once server sends every subscriber the same bytes).
    #[arg(long, global = true)]
    pub deflate: bool,
    #[arg(long, default_value = "1", global = true)]
    pub app_id: String,
    #[arg(long, default_value = "app-key", global = true)]
    pub key: String,
    #[arg(long, default_value = "app-secret", global = true)]
    pub secret: String,
    /// Most connections per worker process (each stays under the 20,000 file limit).
    #[arg(long, default_value_t = 15_000, global = true)]
    pub per_worker: usize,
    /// Client source addresses, as a range FIRST-LAST of 127.x.y.z addresses.
    #[arg(long, default_value = "127.0.0.11-127.0.0.40", global = true)]
    pub source_ips: String,
    /// Report directory [default: target/load/<scenario>-<unix time>].
    #[arg(long, global = true)]
    pub out: Option<PathBuf>,
    /// Also copy the charts and summary.txt here (e.g. benches/results/<name>/<run>, small
    /// SVGs to commit).
    #[arg(long, global = true)]
    pub charts_to: Option<PathBuf>,
    #[arg(long, default_value_t = 500, global = true)]
    pub sample_ms: u64,
    /// Name of the server in reports.
    #[arg(long, default_value = "server", global = true)]
    pub label: String,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Ramp to N connections at R/s and hold: connects/s, handshake latency, failures by cause.
    Connect {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 5_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
    /// Hold subscribed connections at each step: server RSS and kernel slab per connection.
    Idle {
        /// Connection counts to measure at, ascending.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,15000")]
        steps: Vec<usize>,
        /// Channels the connections subscribe to (Pusher; 0: none).
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// Seconds to let the server settle at each step before measuring.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Seconds to hold after the last step (heartbeats keep running).
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
        #[arg(long, default_value_t = 5_000.0)]
        rate: f64,
    },
    /// S subscribers over C channels, events published over the HTTP API at R/s.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// Events per second (all channels together).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Bytes of event data.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// Publisher threads (each owns some channels; with --protocol plain, one WebSocket per
        /// channel it owns).
        #[arg(long, default_value_t = 2)]
        publishers: usize,
        /// Events per HTTP request (1: `/events`; 2 to 10: `/batch_events`).
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// HTTP requests pipelined per publisher connection (servers that close after each
        /// response get one).
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Raise the rate (x1.5 per phase) until loss or the p99 limit; report the sustained max.
        #[arg(long)]
        find_max: bool,
        #[arg(long, default_value_t = 100.0)]
        max_p99_ms: f64,
        #[arg(long, default_value_t = 5.0)]
        phase_secs: f64,
        /// Most phases of --find-max.
        #[arg(long, default_value_t = 16)]
        max_phases: usize,
        /// Phases of --find-max that halve the interval between the best rate and the first
        /// failing one.
        #[arg(long, default_value_t = 2)]
        refine: usize,
        /// How to count the server's send calls per phase: `auto` (corecast's /metrics
        /// counters, else perf stat on the server), `metrics`, `perf` or `off`.
        #[arg(long, default_value = "auto")]
        count_sends: String,
        #[arg(long, default_value_t = 5_000.0)]
        connect_rate: f64,
    },
    /// Hold many subscribed connections (mostly on a few large public channels, some on presence
    /// channels), answering heartbeats; then broadcast one event on every channel per round:
    /// memory per connection (server, kernel, harness), connects/s, CPU, deliveries/s, loss and
    /// latency of a broadcast to all. benches/million.sh drives it.
    Broadcast {
        #[command(flatten)]
        args: broadcast::Args,
    },
    /// Join/leave storm on presence channels; member events/s; member counts verified.
    Presence {
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        channels: usize,
        #[arg(long, default_value_t = 2)]
        conns_per_user: usize,
        #[arg(long, default_value_t = 500)]
        stay_ms: u64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2_000.0)]
        connect_rate: f64,
    },
    /// Connect/disconnect storm while steady subscribers keep receiving events.
    Churn {
        #[arg(long, default_value_t = 1_000)]
        steady: usize,
        #[arg(long, default_value_t = 1_000)]
        churners: usize,
        #[arg(long, default_value_t = 10)]
        channels: usize,
        #[arg(long, default_value_t = 500)]
        stay_ms: u64,
        #[arg(long, default_value_t = 250)]
        jitter_ms: u64,
        /// Events per second published to the steady subscribers' channels.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2_000.0)]
        connect_rate: f64,
    },
    /// RFC 6455 echo round trips against any echo endpoint (use --protocol raw).
    Echo {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Pause between round trips per connection (0: back to back).
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2_000.0)]
        rate: f64,
    },
    /// Self-test of the receive path: an in-process sender floods pre-built frames over
    /// loopback sockets into the same receive loop the workers use; frames/s and CPU.
    RecvBench {
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
        /// Frames the sender writes to one socket at once (a broadcast server's batching).
        #[arg(long, default_value_t = 10)]
        frames_per_write: usize,
        /// Bytes of each frame's payload.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// Sender threads.
        #[arg(long, default_value_t = 1)]
        senders: usize,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__worker") {
        let plan: plan::Plan = serde_json::from_str(&args[2]).expect("a worker plan");
        worker::run(plan);
    }
    if args.get(1).map(String::as_str) == Some("table") {
        // Markdown table of recorded runs: corecast-load table DIR...
        let dirs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        match table::run(&dirs) {
            Ok(t) => print!("{t}"),
            Err(e) => {
                eprintln!("corecast-load table: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `cargo bench` appends `--bench`; it means nothing here.
    args.retain(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let common = match common(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corecast-load: {e}");
            std::process::exit(2);
        }
    };
    if let Scenario::RecvBench { connections, frames_per_write, payload, senders, duration } = cli.scenario {
        let args = recvbench::Args { connections, frames_per_write, payload, senders, duration };
        match recvbench::run(&common, &args) {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                eprintln!("corecast-load: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match scenarios::run(&common, &cli.scenario) {
        Ok(summary) => println!("{summary}"),
        Err(e) => {
            eprintln!("corecast-load: {e}");
            std::process::exit(1);
        }
    }
}

/// The scenario's name for the default report directory: its variant's name, lower case.
fn scenario_name(scenario: &Scenario) -> String {
    format!("{scenario:?}").split_whitespace().next().unwrap_or("run").to_lowercase()
}

fn common(cli: &Cli) -> Result<Common, String> {
    let target = match cli.protocol.as_str() {
        "pusher" => Target::Pusher { key: cli.key.clone(), secret: cli.secret.clone() },
        "raw" => Target::Raw { path: cli.path.clone().unwrap_or_else(|| "/echo".into()) },
        "plain" => Target::Plain {
            sub_path: cli.path.clone().unwrap_or_else(|| "/sub/{channel}".into()),
            pub_path: cli.publish_path.clone(),
        },
        other => return Err(format!("--protocol must be pusher, raw or plain, not {other}")),
    };
    let (first, last) = cli.source_ips.split_once('-').ok_or("--source-ips must be FIRST-LAST")?;
    let first: Ipv4Addr = first.parse().map_err(|e| format!("--source-ips: {e}"))?;
    let last: Ipv4Addr = last.parse().map_err(|e| format!("--source-ips: {e}"))?;
    let source_ips: Vec<Ipv4Addr> = (u32::from(first)..=u32::from(last)).map(Ipv4Addr::from).collect();
    if source_ips.is_empty() || source_ips.len() > 1024 {
        return Err("--source-ips must name 1 to 1024 addresses".into());
    }
    let scenario = scenario_name(&cli.scenario);
    let out = cli.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        PathBuf::from("target/load").join(format!("{scenario}-{t}"))
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let server_pids = if cli.server_pid.is_empty() {
        procstat::pids_listening_on(cli.server.port())
    } else {
        cli.server_pid.clone()
    };
    Ok(Common {
        server: cli.server,
        publish_server: cli.publish_server.unwrap_or(cli.server),
        server_pids,
        target,
        deflate: cli.deflate,
        app_id: cli.app_id.clone(),
        per_worker: cli.per_worker.max(1),
        source_ips,
        out,
        sample_ms: cli.sample_ms,
        charts_to: cli.charts_to.clone(),
        label: cli.label.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_flags_parse_into_broadcast_args_with_their_defaults() {
        let cli =
            Cli::try_parse_from(["corecast-load", "broadcast", "--rounds", "5", "--label", "x"]).unwrap();
        let Scenario::Broadcast { args } = &cli.scenario else { panic!("not broadcast: {:?}", cli.scenario) };
        assert_eq!(args.rounds, 5);
        assert_eq!(args.connections, 10_000);
        assert_eq!(args.max_pending, 2_000);
        assert_eq!(cli.label, "x");
        assert_eq!(scenario_name(&cli.scenario), "broadcast");
    }
}
