//! Webhook receivers as configured: a URL, the event types it wants, a channel-name filter and
//! extra headers. In the config file an entry is either a plain URL string (every event) or a
//! table (soketi's shape):
//!
//! ```toml
//! [[apps.webhooks]]
//! url = "https://example.com/pusher"
//! event_types = ["member_added", "member_removed"]
//! filter = { channel_name_starts_with = "presence-", channel_name_ends_with = "-room" }
//! headers = { Authorization = "Bearer s3cret" }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Every webhook event type corecast sends.
pub const EVENT_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// Headers corecast sets itself on every webhook request.
const RESERVED_HEADERS: [&str; 6] =
    ["content-type", "content-length", "host", "x-pusher-key", "x-pusher-signature", "transfer-encoding"];

/// Channel-name conditions; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFilter {
    /// The channel name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name_starts_with: Option<String>,
    /// The channel name ends with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name_ends_with: Option<String>,
}

impl ChannelFilter {
    /// No condition.
    pub fn is_empty(&self) -> bool {
        self.channel_name_starts_with.is_none() && self.channel_name_ends_with.is_none()
    }

    fn accepts(&self, channel: Option<&str>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(c) = channel else { return false };
        self.channel_name_starts_with.as_deref().is_none_or(|p| c.starts_with(p))
            && self.channel_name_ends_with.as_deref().is_none_or(|s| c.ends_with(s))
    }
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Where the signed batches are POSTed.
    pub url: String,
    /// The event types it gets (empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// The channels it gets events of (empty: all).
    #[serde(skip_serializing_if = "ChannelFilter::is_empty")]
    pub filter: ChannelFilter,
    /// Extra request headers (e.g. a token the receiver checks).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Webhook {
    /// A receiver of every event.
    pub fn url(url: impl Into<String>) -> Webhook {
        Webhook {
            url: url.into(),
            event_types: Vec::new(),
            filter: ChannelFilter::default(),
            headers: BTreeMap::new(),
        }
    }

    /// Whether it gets event `name` about `channel`.
    pub fn wants(&self, name: &str, channel: Option<&str>) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == name))
            && self.filter.accepts(channel)
    }

    /// Whether it gets only some events (the dispatcher then builds its own bodies).
    pub fn selective(&self) -> bool {
        !self.event_types.is_empty() || !self.filter.is_empty()
    }

    /// Checks the receiver's settings; the error names the URL and what to change.
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("webhook {url:?} must be an http:// or https:// URL"));
        }
        for t in &self.event_types {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "webhook {url:?}: unknown event type {t:?} (known: {})",
                    EVENT_TYPES.join(", ")
                ));
            }
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
            if !token {
                return Err(format!("webhook {url:?}: {name:?} is not a valid header name"));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "webhook {url:?}: header {name} is set by corecast and cannot be configured"
                ));
            }
            if value.bytes().any(|c| c.is_ascii_control() && c != b'\t') {
                return Err(format!("webhook {url:?}: the value of header {name} has control characters"));
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Webhook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Webhook, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: String,
            #[serde(default)]
            event_types: Vec<String>,
            #[serde(default, alias = "filters")]
            filter: ChannelFilter,
            #[serde(default)]
            headers: BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a webhook URL string or a table with url, event_types, filter, headers"
        )]
        enum Raw {
            Url(String),
            Table(Table),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Url(url) => Webhook::url(url),
            Raw::Table(t) => {
                Webhook { url: t.url, event_types: t.event_types, filter: t.filter, headers: t.headers }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_and_filters_select_events() {
        let mut w = Webhook::url("http://x/");
        assert!(w.wants("client_event", Some("private-a")) && !w.selective());
        w.event_types = vec!["member_added".into()];
        w.filter.channel_name_starts_with = Some("presence-".into());
        w.filter.channel_name_ends_with = Some("-app".into());
        assert!(w.selective());
        assert!(w.wants("member_added", Some("presence-room-app")));
        assert!(!w.wants("member_added", Some("presence-room")), "both conditions");
        assert!(!w.wants("member_removed", Some("presence-room-app")), "event type");
        assert!(!w.wants("member_added", None));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut w = Webhook::url("ftp://x");
        assert!(w.validate().unwrap_err().contains("http://"));
        w.url = "https://x/h".into();
        w.event_types = vec!["member_joined".into()];
        assert!(w.validate().unwrap_err().contains("member_joined"));
        w.event_types.clear();
        w.headers.insert("X-Pusher-Signature".into(), "x".into());
        assert!(w.validate().unwrap_err().contains("set by corecast"));
        w.headers.clear();
        w.headers.insert("Bad Name".into(), "x".into());
        assert!(w.validate().is_err());
        w.headers.clear();
        w.headers.insert("X-Token".into(), "a\r\nInjected: 1".into());
        assert!(w.validate().unwrap_err().contains("control characters"));
        w.headers.clear();
        w.headers.insert("Authorization".into(), "Bearer t".into());
        assert_eq!(w.validate(), Ok(()));
    }
}
