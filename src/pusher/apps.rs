//! Apps: credentials, feature flags and limits, from the `[[apps]]` tables of the config file.
//! Without any, one development app runs: id `1`, key `app-key`, secret `app-secret`, client
//! events and user authentication on (what soketi and the Pusher tutorials assume).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Numeric by convention: the official Python SDK rejects non-numeric app ids.
    pub id: String,
    pub key: String,
    pub secret: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Relay `client-*` events on private and presence channels.
    #[serde(default)]
    pub client_events: bool,
    /// Accept `pusher:signin` (user authentication) and `#server-to-user-` channels.
    #[serde(default)]
    pub user_authentication: bool,
    /// Webhook URLs (POSTed by the webhook sender).
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Most connections of this app across all cores; 0: unlimited (4004 when over).
    #[serde(default)]
    pub max_connections: u64,
    #[serde(default = "default_max_channels_per_connection")]
    pub max_channels_per_connection: usize,
    #[serde(default = "default_max_presence_members")]
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, in bytes.
    #[serde(default = "default_max_presence_member_bytes")]
    pub max_presence_member_bytes: usize,
    /// Largest event `data`, in bytes (HTTP API → 413; client events → pusher:error).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
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
        }
    }

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
        for url in &self.webhooks {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("app {}: webhook {url:?} must be an http:// or https:// URL", self.id));
            }
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
