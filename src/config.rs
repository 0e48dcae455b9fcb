//! The validated, immutable configuration.
//!
//! Sources, highest precedence first: command-line flags, `CORECAST_*` environment variables,
//! the TOML file named by `--config`, built-in defaults. Every setting has one name in each
//! source: flag `--max-connections`, variable `CORECAST_MAX_CONNECTIONS`, file key
//! `max_connections`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::pusher::apps::{self, App};

pub(crate) mod tls;

/// Command-line flags. Every flag is optional so that unset flags fall through to the
/// environment, the file and the defaults.
#[derive(Debug, Parser, Default)]
#[command(
    name = "corecast",
    version,
    about = "Thread-per-core WebSocket edge server speaking the Pusher Channels protocol"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "CORECAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "CORECAST_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on [default: 6001].
    #[arg(long, env = "CORECAST_PORT")]
    pub port: Option<u16>,
    /// Executors (pinned cores) to run; 0 means every available core [default: 0].
    #[arg(long, env = "CORECAST_CORES")]
    pub cores: Option<usize>,
    /// Most WebSocket connections held at once, split evenly across cores [default: 1000000].
    #[arg(long, env = "CORECAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Listen backlog, clamped to net.core.somaxconn [default: 65535].
    #[arg(long, env = "CORECAST_BACKLOG")]
    pub backlog: Option<u32>,
    /// Serve the /echo WebSocket endpoint (conformance runs and raw benchmarks).
    #[arg(long, env = "CORECAST_ECHO", num_args = 0..=1, default_missing_value = "true")]
    pub echo: Option<bool>,
    /// Negotiate permessage-deflate (RFC 7692, no context takeover) with clients that offer it.
    #[arg(long, env = "CORECAST_PERMESSAGE_DEFLATE", num_args = 0..=1, default_missing_value = "true")]
    pub permessage_deflate: Option<bool>,
    /// Seconds a client may take to send its HTTP request head [default: 10].
    #[arg(long, env = "CORECAST_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u32>,
    /// Seconds without client activity before the server pings [default: 120].
    #[arg(long, env = "CORECAST_ACTIVITY_TIMEOUT")]
    pub activity_timeout: Option<u32>,
    /// Seconds to wait for any reply to a ping before closing [default: 30].
    #[arg(long, env = "CORECAST_PONG_TIMEOUT")]
    pub pong_timeout: Option<u32>,
    /// Seconds to wait for the peer's close frame after sending ours [default: 5].
    #[arg(long, env = "CORECAST_CLOSE_TIMEOUT")]
    pub close_timeout: Option<u32>,
    /// Seconds to wait for peers to close on shutdown before exiting [default: 10].
    #[arg(long, env = "CORECAST_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u32>,
    /// Largest WebSocket frame payload accepted, in bytes [default: 65536].
    #[arg(long, env = "CORECAST_MAX_FRAME_SIZE")]
    pub max_frame_size: Option<usize>,
    /// Largest WebSocket message accepted, in bytes [default: 65536].
    #[arg(long, env = "CORECAST_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Bytes queued for one slow client before it is cut off (Pusher) or no longer read (echo)
    /// [default: 262144].
    #[arg(long, env = "CORECAST_MAX_OUTBOUND_BYTES")]
    pub max_outbound_bytes: Option<usize>,
    /// Once a core has had fan-out output waiting to be written for this many milliseconds, a
    /// connection's frames wait up to this long for more to join them in one send (fewer sends
    /// per frame under sustained load, more latency); 0: write them as soon as possible [default: 0].
    #[arg(long, env = "CORECAST_COALESCE_MS")]
    pub coalesce_ms: Option<u64>,
    /// Capacity of each core-to-core ring, in messages [default: 4096].
    #[arg(long, env = "CORECAST_RING_CAPACITY")]
    pub ring_capacity: Option<usize>,
    /// Largest HTTP request body accepted, in bytes (larger: 413) [default: 102400].
    #[arg(long, env = "CORECAST_MAX_BODY_SIZE")]
    pub max_body_size: Option<usize>,
    /// SO_SNDBUF of accepted sockets, in bytes; caps the kernel's send buffer per connection
    /// (so a client that stops reading is detected sooner); 0 keeps kernel autotuning [default: 0].
    #[arg(long, env = "CORECAST_SOCKET_SEND_BUFFER")]
    pub socket_send_buffer: Option<usize>,
    /// Also serve /metrics (and only it, / and /ready) on this port; 0: main port only [default: 0].
    #[arg(long, env = "CORECAST_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Share --port with other corecast processes on this host (one SO_REUSEPORT group: the
    /// kernel spreads connections over all of them); without it a port in use is an error.
    #[arg(long, env = "CORECAST_SHARE_PORT", num_args = 0..=1, default_missing_value = "true")]
    pub share_port: Option<bool>,
    /// Serve the live status page (/status) on the main port to requests carrying this token
    /// (`?token=` or `Authorization: Bearer`); it is always served on the metrics port
    /// [default: none].
    #[arg(long, env = "CORECAST_STATUS_TOKEN")]
    pub status_token: Option<String>,
    /// Serve TLS (https://, wss://) on --port with this PEM certificate chain (leaf first);
    /// needs --tls-key. Re-read on SIGHUP.
    #[arg(long, env = "CORECAST_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1). Re-read on SIGHUP.
    #[arg(long, env = "CORECAST_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<String>,
    /// Redis URL (redis://host:port/db): run as one node of a cluster sharing this Redis.
    #[arg(long, env = "CORECAST_REDIS")]
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel corecast uses [default: corecast].
    #[arg(long, env = "CORECAST_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Seconds a node's heartbeat key lives: a node silent this long is removed [default: 10].
    #[arg(long, env = "CORECAST_NODE_TTL")]
    pub node_ttl: Option<u32>,
    /// Node id in socket ids (1..=999999); 0 picks one at random at start-up [default: 0].
    #[arg(long, env = "CORECAST_NODE_ID")]
    pub node_id: Option<u32>,
    /// Id of the default app (used when the config file defines no [[apps]]) [default: 1].
    #[arg(long, env = "CORECAST_APP_ID")]
    pub app_id: Option<String>,
    /// Key of the default app [default: app-key].
    #[arg(long, env = "CORECAST_APP_KEY")]
    pub app_key: Option<String>,
    /// Secret of the default app [default: app-secret].
    #[arg(long, env = "CORECAST_APP_SECRET")]
    pub app_secret: Option<String>,
    /// Webhook URL for the default app (repeatable).
    #[arg(long, env = "CORECAST_WEBHOOK_URL", value_delimiter = ',')]
    pub webhook_url: Vec<String>,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on.
    pub port: u16,
    /// Executors (pinned cores); 0: every available core.
    pub cores: usize,
    /// Most WebSocket connections held at once, split evenly across cores.
    pub max_connections: usize,
    /// Listen backlog (clamped to net.core.somaxconn).
    pub backlog: u32,
    /// Serve the /echo WebSocket endpoint.
    pub echo: bool,
    /// Negotiate permessage-deflate with clients that offer it.
    pub permessage_deflate: bool,
    /// Seconds a client may take to send its HTTP request head.
    pub handshake_timeout: u32,
    /// Seconds without client activity before the server pings.
    pub activity_timeout: u32,
    /// Seconds to wait for any reply to a ping before closing.
    pub pong_timeout: u32,
    /// Seconds to wait for the peer's close frame after sending ours.
    pub close_timeout: u32,
    /// Seconds to wait for peers to close on shutdown.
    pub drain_timeout: u32,
    /// Largest WebSocket frame payload accepted, in bytes.
    pub max_frame_size: usize,
    /// Largest WebSocket message accepted, in bytes.
    pub max_message_size: usize,
    /// Bytes queued for one slow client before it is cut off (Pusher) or no longer read (echo).
    pub max_outbound_bytes: usize,
    /// Under a sustained fan-out backlog, milliseconds a connection's frames wait for more to
    /// join them in one send; 0: no wait.
    pub coalesce_ms: u64,
    /// Capacity of each core-to-core ring, in messages.
    pub ring_capacity: usize,
    /// Largest HTTP request body accepted, in bytes.
    pub max_body_size: usize,
    /// SO_SNDBUF of accepted sockets, in bytes; 0 keeps kernel autotuning.
    pub socket_send_buffer: usize,
    /// Also serve /metrics on this port; 0: main port only.
    pub metrics_port: u16,
    /// Share the port with other corecast processes (one SO_REUSEPORT group).
    pub share_port: bool,
    /// Token that opens /status on the main port; empty: only on the metrics port.
    pub status_token: String,
    /// PEM certificate chain served with TLS on the main port; empty: plain TCP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Redis URL; empty: no cluster.
    pub redis: String,
    /// Prefix of every Redis key and channel corecast uses.
    pub redis_prefix: String,
    /// Seconds a node's heartbeat key lives.
    pub node_ttl: u32,
    /// Node id in socket ids (1..=999999); 0 picks one at start-up.
    pub node_id: u32,
    /// Apps; empty in the file means the development app (see `pusher::apps`).
    pub apps: Vec<App>,
}

/// Longest `coalesce_ms` accepted.
const MAX_COALESCE_MS: u64 = 1000;

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 6001,
            cores: 0,
            max_connections: 1_000_000,
            backlog: 65535,
            echo: false,
            permessage_deflate: false,
            handshake_timeout: 10,
            activity_timeout: 120,
            pong_timeout: 30,
            close_timeout: 5,
            drain_timeout: 10,
            max_frame_size: 64 * 1024,
            max_message_size: 64 * 1024,
            max_outbound_bytes: 256 * 1024,
            coalesce_ms: 0,
            ring_capacity: 4096,
            max_body_size: 100 * 1024,
            socket_send_buffer: 0,
            metrics_port: 0,
            share_port: false,
            status_token: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            redis: String::new(),
            redis_prefix: "corecast".into(),
            node_ttl: 10,
            node_id: 0,
            apps: Vec::new(),
        }
    }
}

/// A configuration error: one line saying what is wrong and what to change.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! overlay {
    ($cfg:ident, $cli:ident, $($field:ident),*) => {
        $( if let Some(v) = $cli.$field.clone() { $cfg.$field = v; } )*
    };
}

impl Config {
    /// Builds the effective configuration: file (if any) over defaults, then flags and
    /// environment (clap already merged those two, flags first) over that.
    pub fn resolve(cli: &Cli) -> Result<Config, ConfigError> {
        let mut cfg = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
                Config::from_toml(&text)
                    .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))?
            }
            None => Config::default(),
        };
        overlay!(
            cfg,
            cli,
            host,
            port,
            cores,
            max_connections,
            backlog,
            echo,
            permessage_deflate,
            handshake_timeout,
            activity_timeout,
            pong_timeout,
            close_timeout,
            drain_timeout,
            max_frame_size,
            max_message_size,
            max_outbound_bytes,
            coalesce_ms,
            ring_capacity,
            max_body_size,
            socket_send_buffer,
            metrics_port,
            share_port,
            status_token,
            tls_cert,
            tls_key,
            redis,
            redis_prefix,
            node_ttl,
            node_id
        );
        if cfg.apps.is_empty() {
            let mut app = App::development();
            if let Some(id) = &cli.app_id {
                app.id = id.clone();
            }
            if let Some(key) = &cli.app_key {
                app.key = key.clone();
            }
            if let Some(secret) = &cli.app_secret {
                app.secret = secret.clone();
            }
            cfg.apps.push(app);
        } else if cli.app_id.is_some() || cli.app_key.is_some() || cli.app_secret.is_some() {
            return Err(ConfigError(
                "--app-id/--app-key/--app-secret set the default app: remove them, or the [[apps]] tables of the config file"
                    .into(),
            ));
        }
        cfg.apps[0].webhooks.extend(cli.webhook_url.iter().map(crate::pusher::hook_targets::Webhook::url));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML configuration (unset keys take their defaults; not validated).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(one_line(&e.to_string())))
    }

    /// The configuration as TOML (what `--print-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("Config serializes")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_connections", self.max_connections),
            ("max_frame_size", self.max_frame_size),
            ("max_message_size", self.max_message_size),
            ("max_outbound_bytes", self.max_outbound_bytes),
            ("ring_capacity", self.ring_capacity),
            ("handshake_timeout", self.handshake_timeout as usize),
            ("activity_timeout", self.activity_timeout as usize),
            ("pong_timeout", self.pong_timeout as usize),
            ("close_timeout", self.close_timeout as usize),
            ("backlog", self.backlog as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("{name} must be greater than 0")));
            }
        }
        if self.coalesce_ms > MAX_COALESCE_MS {
            return Err(ConfigError(format!(
                "coalesce_ms must be at most {MAX_COALESCE_MS} (it delays frames under load); use 0 to turn it off"
            )));
        }
        if !self.status_token.is_empty()
            && (self.status_token.len() < 16 || !self.status_token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError(
                "status_token must be at least 16 printable characters without spaces (or empty)".into(),
            ));
        }
        if self.max_frame_size > self.max_message_size {
            return Err(ConfigError(format!(
                "max_frame_size ({}) must not exceed max_message_size ({})",
                self.max_frame_size, self.max_message_size
            )));
        }
        if self.max_message_size > 1 << 30 {
            return Err(ConfigError("max_message_size must be at most 1 GiB".into()));
        }
        if self.node_id > 999_999 {
            return Err(ConfigError("node_id must be at most 999999".into()));
        }
        let redis_ok = self.redis.is_empty()
            || self.redis.starts_with("redis://")
            || self.redis.starts_with("rediss://");
        if !redis_ok {
            return Err(ConfigError(format!("redis must be a redis:// URL, not {:?}", self.redis)));
        }
        if self.node_ttl < 3 {
            return Err(ConfigError("node_ttl must be at least 3 seconds".into()));
        }
        if self.max_body_size == 0 {
            return Err(ConfigError("max_body_size must be greater than 0".into()));
        }
        apps::validate_all(&self.apps).map_err(ConfigError)?;
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                tls::load(Path::new(&self.tls_cert), Path::new(&self.tls_key)).map_err(ConfigError)?;
            }
            (false, true) => {
                return Err(ConfigError("tls_cert is set but tls_key is not: give both (--tls-key)".into()));
            }
            (true, false) => {
                return Err(ConfigError("tls_key is set but tls_cert is not: give both (--tls-cert)".into()));
            }
        }
        let available = available_cores();
        if self.cores > available {
            return Err(ConfigError(format!(
                "cores is {} but only {available} cores are available to this process: use --cores {available} or 0",
                self.cores
            )));
        }
        Ok(())
    }

    /// Whether the main port serves TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert.is_empty()
    }

    /// Reads the certificate and key again and builds the TLS configuration (None: no TLS).
    pub(crate) fn load_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        if !self.tls() {
            return Ok(None);
        }
        tls::load(Path::new(&self.tls_cert), Path::new(&self.tls_key)).map(Some)
    }

    /// Executors to start.
    pub fn executor_count(&self) -> usize {
        if self.cores == 0 { available_cores() } else { self.cores }
    }

    /// WebSocket connections one core may hold: `max_connections` split evenly, rounded up.
    pub fn per_core_max_connections(&self) -> usize {
        self.max_connections.div_ceil(self.executor_count())
    }

    /// What each core's engine needs.
    pub(crate) fn engine_settings(&self) -> crate::core::engine::Settings {
        crate::core::engine::Settings {
            limits: crate::protocol::decoder::Limits {
                max_frame: self.max_frame_size,
                max_message: self.max_message_size,
            },
            max_connections: self.per_core_max_connections(),
            max_outbound_bytes: self.max_outbound_bytes,
            max_body: self.max_body_size,
            echo: self.echo,
            deflate: self.permessage_deflate,
            handshake_timeout: self.handshake_timeout,
            activity_timeout: self.activity_timeout,
            pong_timeout: self.pong_timeout,
            close_timeout: self.close_timeout,
            drain_timeout: self.drain_timeout,
            cores: u16::try_from(self.executor_count()).unwrap_or(u16::MAX),
            outbox_limit: self.ring_capacity.saturating_mul(16),
            backlog_limit: BACKLOG_LIMIT,
            coalesce_ms: self.coalesce_ms,
        }
    }
}

/// Bytes queued for one core's connections above which the HTTP API answers new publishes with
/// 503 (Retry-After) until delivery catches up.
const BACKLOG_LIMIT: usize = 64 << 20;

/// Cores this process may run on (its affinity mask).
pub fn available_cores() -> usize {
    core_affinity::get_core_ids().map_or(1, |ids| ids.len().max(1))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_on_6001_everywhere() {
        let cfg = Config::resolve(&Cli::default()).unwrap();
        assert_eq!(cfg.port, 6001);
        assert_eq!(cfg.host.to_string(), "0.0.0.0");
        assert!(!cfg.echo);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("corecast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "port = 7000\nmax_connections = 10\necho = true\n").unwrap();
        let cli = Cli { config: Some(path.clone()), port: Some(7001), ..Cli::default() };
        let cfg = Config::resolve(&cli).unwrap();
        assert_eq!(cfg.port, 7001);
        assert_eq!(cfg.max_connections, 10);
        assert!(cfg.echo);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn coalesce_ms_reaches_the_cores_and_is_bounded() {
        let cli = Cli { coalesce_ms: Some(60), ..Cli::default() };
        let cfg = Config::resolve(&cli).unwrap();
        assert_eq!(cfg.engine_settings().coalesce_ms, 60);
        assert_eq!(Config::resolve(&Cli::default()).unwrap().engine_settings().coalesce_ms, 0);
        let err = Config::resolve(&Cli { coalesce_ms: Some(1001), ..Cli::default() }).unwrap_err();
        assert!(err.0.contains("coalesce_ms must be at most 1000"), "{err}");
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let cfg = Config { port: 1234, echo: true, ..Config::default() };
        assert_eq!(Config::from_toml(&cfg.to_toml()).unwrap(), cfg);
    }

    #[test]
    fn apps_come_from_the_file_or_default_to_the_development_app() {
        let cfg = Config::resolve(&Cli::default()).unwrap();
        assert_eq!(cfg.apps.len(), 1);
        assert_eq!((cfg.apps[0].id.as_str(), cfg.apps[0].key.as_str()), ("1", "app-key"));
        assert!(cfg.apps[0].client_events && cfg.apps[0].user_authentication);
        let file = r#"
            [[apps]]
            id = "42"
            key = "k"
            secret = "s"
            client_events = true
            user_authentication = true
            webhooks = ["http://127.0.0.1:8000/pusher/webhooks"]
        "#;
        let cfg = Config::from_toml(file).unwrap();
        assert_eq!(cfg.apps[0].max_presence_members, 100);
        assert_eq!(cfg.apps[0].webhooks.len(), 1);
        let dup = format!("{file}\n[[apps]]\nid = \"42\"\nkey = \"k2\"\nsecret = \"s\"\n");
        let cfg = Config::from_toml(&dup).unwrap();
        assert!(cfg.validate().unwrap_err().0.contains("appears twice"));
    }

    #[test]
    fn feature_keys_and_webhook_tables_round_trip_through_print_config() {
        let file = r#"
            [[apps]]
            id = "1"
            key = "k"
            secret = "s"
            user_authentication = true
            watchlist_events = true
            max_watchlist_size = 50
            authorized_connections_timeout = 30
            subscription_count_events = true
            subscription_count_interval = 2
            allowed_origins = ["https://app.example.com", "*.example.com"]
            webhooks = [
                "http://127.0.0.1:8000/all",
                { url = "http://127.0.0.1:8000/presence", event_types = ["member_added"], filter = { channel_name_starts_with = "presence-" }, headers = { Authorization = "Bearer t" } },
            ]

            [[apps]]
            id = "2"
            key = "k2"
            secret = "s"

            [[apps.webhooks]]
            url = "http://127.0.0.1:8000/beta"
            filters = { channel_name_ends_with = "-beta" }
        "#;
        let cfg = Config::from_toml(file).unwrap();
        cfg.validate().unwrap();
        let app = &cfg.apps[0];
        assert_eq!((app.max_watchlist_size, app.authorized_connections_timeout), (50, 30));
        assert_eq!(app.webhooks.len(), 2);
        assert!(!app.webhooks[0].selective());
        assert_eq!(app.webhooks[1].event_types, ["member_added"]);
        assert_eq!(app.webhooks[1].headers["Authorization"], "Bearer t");
        let beta = &cfg.apps[1].webhooks[0];
        assert_eq!(beta.filter.channel_name_ends_with.as_deref(), Some("-beta"), "soketi's alias");
        let printed = cfg.to_toml();
        assert_eq!(Config::from_toml(&printed).unwrap(), cfg, "{printed}");
        let defaults = Config::from_toml("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n").unwrap();
        let a = &defaults.apps[0];
        assert!(!a.watchlist_events && !a.subscription_count_events && a.allowed_origins.is_empty());
        assert_eq!(
            (a.max_watchlist_size, a.authorized_connections_timeout, a.subscription_count_interval),
            (100, 0, 1)
        );
    }

    #[test]
    fn bad_feature_settings_are_one_line_errors_naming_the_key() {
        let app = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
        for (extra, expect) in [
            ("allowed_origins = [\"https://a.com/path\"]", "allowed_origins"),
            ("webhooks = [{ url = \"http://x\", event_types = [\"joined\"] }]", "unknown event type"),
            ("webhooks = [{ url = \"http://x\", headers = { X-Pusher-Key = \"k\" } }]", "set by corecast"),
            ("max_watchlist_size = 0", "max_watchlist_size"),
            ("subscription_count_interval = 0", "subscription_count_interval"),
            ("authorized_connections_timeout = 7200", "authorized_connections_timeout"),
        ] {
            let cfg = Config::from_toml(&format!("{app}{extra}\n")).unwrap();
            let e = cfg.validate().unwrap_err().0;
            assert!(e.contains(expect) && !e.contains('\n'), "{extra}: {e}");
        }
        let e = Config::from_toml(&format!("{app}webhooks = [{{ uri = \"http://x\" }}]\n")).unwrap_err().0;
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors() {
        let e = Config::from_toml("prot = 1").unwrap_err();
        assert!(!e.0.contains('\n'), "{e}");
        assert!(e.0.contains("prot"), "{e}");
        let cli = Cli { max_message_size: Some(10), max_frame_size: Some(20), ..Cli::default() };
        assert!(Config::resolve(&cli).unwrap_err().0.contains("max_frame_size"));
        let cli = Cli { max_connections: Some(0), ..Cli::default() };
        assert!(Config::resolve(&cli).is_err());
    }

    /// A self-signed certificate for localhost and its key, as PEM files in a fresh directory.
    fn pem_files(tag: &str) -> (PathBuf, String, String) {
        let dir = std::env::temp_dir().join(format!("corecast-tls-cfg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (dir, c.to_string_lossy().into_owned(), k.to_string_lossy().into_owned())
    }

    #[test]
    fn tls_needs_a_readable_certificate_and_its_own_key() {
        let (dir, cert, key) = pem_files("a");
        let ok = Cli { tls_cert: Some(cert.clone()), tls_key: Some(key.clone()), ..Cli::default() };
        let cfg = Config::resolve(&ok).unwrap();
        assert!(cfg.tls());
        let server = cfg.load_tls().unwrap().expect("a TLS configuration");
        assert_eq!(server.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(Config::resolve(&Cli::default()).unwrap().load_tls().unwrap().is_none());

        let only_cert = Cli { tls_cert: Some(cert.clone()), ..Cli::default() };
        assert!(Config::resolve(&only_cert).unwrap_err().0.contains("--tls-key"));
        let only_key = Cli { tls_key: Some(key.clone()), ..Cli::default() };
        assert!(Config::resolve(&only_key).unwrap_err().0.contains("--tls-cert"));
        let missing =
            Cli { tls_cert: Some(format!("{cert}.nope")), tls_key: Some(key.clone()), ..Cli::default() };
        let e = Config::resolve(&missing).unwrap_err().0;
        assert!(e.contains("tls_cert") && e.contains(".nope") && !e.contains('\n'), "{e}");
        // The key file given as the certificate, and a key that is not the certificate's.
        let swapped = Cli { tls_cert: Some(key.clone()), tls_key: Some(key.clone()), ..Cli::default() };
        assert!(Config::resolve(&swapped).unwrap_err().0.contains("no PEM certificate"));
        let (other_dir, _, other_key) = pem_files("b");
        let mismatch = Cli { tls_cert: Some(cert.clone()), tls_key: Some(other_key), ..Cli::default() };
        let e = Config::resolve(&mismatch).unwrap_err().0;
        assert!(e.contains("the key must be the certificate's own"), "{e}");

        // The TOML keys, and --print-config showing them.
        let file = Config::from_toml(&format!("tls_cert = {cert:?}\ntls_key = {key:?}\n")).unwrap();
        file.validate().unwrap();
        assert_eq!((file.tls_cert.as_str(), file.tls_key.as_str()), (cert.as_str(), key.as_str()));
        assert_eq!(Config::from_toml(&file.to_toml()).unwrap(), file);
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other_dir).unwrap();
    }
}
