//! Apps: credentials, feature flags and limits, from the `[[apps]]` tables of the config file.
//! Without any, one development app runs: id `1`, key `app-key`, secret `app-secret`, client
//! events and user authentication on (what soketi and the Pusher tutorials assume).

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use super::hook_targets::Webhook;
use super::origins::Pattern;

/// An app's index in the configured list (what connections, queries and rings carry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AppIdx(pub(crate) u16);

impl AppIdx {
    /// The index in per-app tables.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The configured apps, looked up by key (WebSocket paths) and id (HTTP API paths).
pub(crate) struct Apps {
    list: Vec<App>,
    by_key: HashMap<String, AppIdx, FxBuildHasher>,
    by_id: HashMap<String, AppIdx, FxBuildHasher>,
    /// Per app: `allowed_origins`, parsed.
    origins: Vec<Vec<Pattern>>,
}

impl Apps {
    pub(crate) fn new(list: Vec<App>) -> Apps {
        assert!(list.len() <= usize::from(u16::MAX), "at most 65535 apps");
        let idx = |i: usize| AppIdx(u16::try_from(i).expect("checked above"));
        let by_key = list.iter().enumerate().map(|(i, a)| (a.key.clone(), idx(i))).collect();
        let by_id = list.iter().enumerate().map(|(i, a)| (a.id.clone(), idx(i))).collect();
        // Validated with the configuration; an entry that does not parse matches nothing.
        let origins = list
            .iter()
            .map(|a| a.allowed_origins.iter().filter_map(|p| Pattern::parse(p).ok()).collect())
            .collect();
        Apps { list, by_key, by_id, origins }
    }

    /// Whether a handshake with this `Origin` header may connect to `app`.
    pub(crate) fn origin_allowed(&self, app: AppIdx, origin: Option<&str>) -> bool {
        super::origins::allowed(&self.origins[app.index()], origin)
    }

    pub(crate) fn get(&self, app: AppIdx) -> &App {
        &self.list[app.index()]
    }

    pub(crate) fn by_key(&self, key: &str) -> Option<AppIdx> {
        self.by_key.get(key).copied()
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<AppIdx> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn all(&self) -> &[App] {
        &self.list
    }

    /// Every app's index.
    pub(crate) fn indexes(&self) -> impl Iterator<Item = AppIdx> + use<> {
        (0..self.list.len()).map(|i| AppIdx(u16::try_from(i).expect("checked in new")))
    }
}

/// One app: its credentials, feature switches and limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Numeric by convention: the official Python SDK rejects non-numeric app ids.
    pub id: String,
    /// The public key clients connect with (`/app/{key}`).
    pub key: String,
    /// Signs channel auth, sign-in, HTTP API requests and webhooks.
    pub secret: String,
    /// A disabled app refuses connections (4003) and API requests (403).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Relay `client-*` events on private and presence channels.
    #[serde(default)]
    pub client_events: bool,
    /// Accept `pusher:signin` (user authentication) and `#server-to-user-` channels.
    #[serde(default)]
    pub user_authentication: bool,
    /// Webhook receivers: URL strings, or tables with `url`, `event_types`, `filter`, `headers`.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// Most connections of this app across all cores; 0: unlimited (4004 when over).
    #[serde(default)]
    pub max_connections: u64,
    /// Channels one connection may subscribe to.
    #[serde(default = "default_max_channels_per_connection")]
    pub max_channels_per_connection: usize,
    /// Distinct users in one presence channel.
    #[serde(default = "default_max_presence_members")]
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, in bytes.
    #[serde(default = "default_max_presence_member_bytes")]
    pub max_presence_member_bytes: usize,
    /// Largest event `data`, in bytes (HTTP API → 413; client events → pusher:error).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Longest channel name.
    #[serde(default = "default_max_channel_name_length")]
    pub max_channel_name_length: usize,
    /// Client events each connection may send per second.
    #[serde(default = "default_client_event_rate")]
    pub client_event_rate: u8,
    /// Signed HTTP API requests per second this app may make (per core); 0: unlimited.
    #[serde(default)]
    pub max_api_requests_per_second: u32,
    /// Send `subscription_count` webhooks.
    #[serde(default)]
    pub subscription_count_webhooks: bool,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels.
    #[serde(default)]
    pub subscription_count_events: bool,
    /// Seconds between two `subscription_count` events of one channel (per node).
    #[serde(default = "default_subscription_count_interval")]
    pub subscription_count_interval: u32,
    /// Send `pusher_internal:watchlist_events` to signed-in users about their `watchlist`.
    #[serde(default)]
    pub watchlist_events: bool,
    /// Most user ids in one sign-in's `watchlist`.
    #[serde(default = "default_max_watchlist_size")]
    pub max_watchlist_size: usize,
    /// Seconds a connection may stay without signing in or subscribing to a private or
    /// presence channel before it is closed with 4009; 0: never.
    #[serde(default)]
    pub authorized_connections_timeout: u32,
    /// Origins allowed to open WebSockets (`https://app.example.com`, `*.example.com`, `*`);
    /// empty: any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_max_channels_per_connection() -> usize {
    100
}
fn default_max_presence_members() -> usize {
    100
}
fn default_max_presence_member_bytes() -> usize {
    1024
}
fn default_max_event_bytes() -> usize {
    10 * 1024
}
fn default_max_channel_name_length() -> usize {
    200
}
fn default_client_event_rate() -> u8 {
    10
}
fn default_subscription_count_interval() -> u32 {
    1
}
fn default_max_watchlist_size() -> usize {
    100
}

impl App {
    /// The development app used when no app is configured.
    pub fn development() -> App {
        App {
            id: "1".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
            enabled: true,
            client_events: true,
            user_authentication: true,
            webhooks: Vec::new(),
            max_connections: 0,
            max_channels_per_connection: default_max_channels_per_connection(),
            max_presence_members: default_max_presence_members(),
            max_presence_member_bytes: default_max_presence_member_bytes(),
            max_event_bytes: default_max_event_bytes(),
            max_channel_name_length: default_max_channel_name_length(),
            client_event_rate: default_client_event_rate(),
            max_api_requests_per_second: 0,
            subscription_count_webhooks: false,
            subscription_count_events: false,
            subscription_count_interval: default_subscription_count_interval(),
            watchlist_events: true,
            max_watchlist_size: default_max_watchlist_size(),
            authorized_connections_timeout: 0,
            allowed_origins: Vec::new(),
        }
    }

    /// Whether any webhook receiver wants event `name` about `channel`.
    pub(crate) fn wants_webhook(&self, name: &str, channel: Option<&str>) -> bool {
        self.webhooks.iter().any(|w| w.wants(name, channel))
    }

    /// Checks the app's settings; the error says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.contains('/') {
            return Err(format!("app id {:?} must be non-empty and contain no '/'", self.id));
        }
        if self.key.is_empty() || self.key.contains('/') || self.key.contains('?') {
            return Err(format!("app {}: key must be non-empty and contain no '/' or '?'", self.id));
        }
        if self.secret.is_empty() {
            return Err(format!("app {}: secret must not be empty", self.id));
        }
        if self.client_event_rate == 0 {
            return Err(format!("app {}: client_event_rate must be at least 1", self.id));
        }
        for w in &self.webhooks {
            w.validate().map_err(|e| format!("app {}: {e}", self.id))?;
        }
        if !(1..=3600).contains(&self.subscription_count_interval) {
            return Err(format!("app {}: subscription_count_interval must be 1 to 3600 seconds", self.id));
        }
        if !(1..=10_000).contains(&self.max_watchlist_size) {
            return Err(format!("app {}: max_watchlist_size must be 1 to 10000", self.id));
        }
        if self.authorized_connections_timeout > 3600 {
            return Err(format!(
                "app {}: authorized_connections_timeout must be at most 3600 seconds (0: off)",
                self.id
            ));
        }
        for p in &self.allowed_origins {
            Pattern::parse(p).map_err(|e| format!("app {}: {e}", self.id))?;
        }
        Ok(())
    }
}

/// Checks a set of apps: each valid, ids and keys unique.
pub fn validate_all(apps: &[App]) -> Result<(), String> {
    for (i, a) in apps.iter().enumerate() {
        a.validate()?;
        if apps[..i].iter().any(|b| b.id == a.id) {
            return Err(format!("app id {:?} appears twice", a.id));
        }
        if apps[..i].iter().any(|b| b.key == a.key) {
            return Err(format!("app key {:?} appears twice", a.key));
        }
    }
    Ok(())
}
