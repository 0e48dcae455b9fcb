//! Channel names: validation and classification (Pusher's channel naming conventions).

/// What a channel name says about the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Public,
    Private,
    /// `private-encrypted-`: authorized like private; payloads are opaque to the server.
    Encrypted,
    Presence,
    /// `#server-to-user-{id}`: events for every connection signed in as that user.
    User,
}

pub(crate) const USER_PREFIX: &str = "#server-to-user-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) kind: Kind,
    /// `cache-`, `private-cache-`, `private-encrypted-cache-`, `presence-cache-`.
    pub(crate) cache: bool,
}

impl Class {
    pub(crate) fn needs_auth(self) -> bool {
        matches!(self.kind, Kind::Private | Kind::Encrypted | Kind::Presence)
    }

    /// Client events are relayed on private, encrypted and presence channels.
    pub(crate) fn allows_client_events(self) -> bool {
        self.needs_auth()
    }
}

pub(crate) fn classify(name: &str) -> Class {
    let kind = if name.starts_with(USER_PREFIX) {
        Kind::User
    } else if name.starts_with("presence-") {
        Kind::Presence
    } else if name.starts_with("private-encrypted-") {
        Kind::Encrypted
    } else if name.starts_with("private-") {
        Kind::Private
    } else {
        Kind::Public
    };
    let cache = ["cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"]
        .iter()
        .any(|p| name.starts_with(p));
    Class { kind, cache }
}

fn allowed(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Why a channel name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    TooLong,
    BadCharacter,
}

impl NameError {
    pub(crate) fn message(self, max: usize) -> String {
        match self {
            NameError::Empty => "The channel name must not be empty.".into(),
            NameError::TooLong => format!("The channel name is longer than the allowed {max} characters."),
            NameError::BadCharacter => {
                "The channel name may contain only A-Z, a-z, 0-9 and - _ = @ , . ; (and a leading #server-to-user-)."
                    .into()
            }
        }
    }
}

/// Checks a channel name: `[-a-zA-Z0-9_=@,.;]+`, or `#server-to-user-` followed by those, at
/// most `max_len` bytes.
pub(crate) fn validate(name: &str, max_len: usize) -> Result<Class, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_len {
        return Err(NameError::TooLong);
    }
    let body = name.strip_prefix(USER_PREFIX).unwrap_or(name);
    if body.is_empty() || !body.bytes().all(allowed) {
        return Err(NameError::BadCharacter);
    }
    Ok(classify(name))
}

/// User ids (signin, `#server-to-user-`): `[-a-zA-Z0-9_=@,.;]+`, at most 200 bytes.
pub(crate) fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_classify_in_order() {
        assert_eq!(classify("presence-cache-x"), Class { kind: Kind::Presence, cache: true });
        assert_eq!(classify("private-encrypted-cache-x"), Class { kind: Kind::Encrypted, cache: true });
        assert_eq!(classify("private-cache-x").kind, Kind::Private);
        assert_eq!(classify("cache-x"), Class { kind: Kind::Public, cache: true });
        assert_eq!(classify("x-cache-y"), Class { kind: Kind::Public, cache: false });
        assert_eq!(classify("#server-to-user-42").kind, Kind::User);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate("my-channel_1=@,.;", 200).is_ok());
        assert_eq!(validate("bad name", 200), Err(NameError::BadCharacter));
        assert_eq!(validate("bad#name", 200), Err(NameError::BadCharacter));
        assert_eq!(validate("#server-to-user-", 200), Err(NameError::BadCharacter));
        assert_eq!(validate(&"a".repeat(201), 200), Err(NameError::TooLong));
        assert_eq!(validate("", 200), Err(NameError::Empty));
        assert!(validate(&"a".repeat(200), 200).is_ok());
    }
}
