//! Signatures: channel authorization, user sign-in, HTTP API request signing and webhook
//! signing. HMAC-SHA256 with the app secret, lowercase hex, compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `parts` concatenated, keyed with `secret`.
pub fn sign(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Checks a subscription's `auth` (`key:hexsig`) over `socket_id:channel[:channel_data]`.
pub fn channel_auth_ok(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    let sig = match channel_data {
        Some(d) => sign(secret, &[socket_id.as_bytes(), b":", channel.as_bytes(), b":", d.as_bytes()]),
        None => sign(secret, &[socket_id.as_bytes(), b":", channel.as_bytes()]),
    };
    expected_auth_matches(key, &sig, auth)
}

/// Checks a `pusher:signin` `auth` over `socket_id::user::user_data`.
pub fn signin_auth_ok(key: &str, secret: &str, socket_id: &str, user_data: &str, auth: &str) -> bool {
    let sig = sign(secret, &[socket_id.as_bytes(), b"::user::", user_data.as_bytes()]);
    expected_auth_matches(key, &sig, auth)
}

fn expected_auth_matches(key: &str, sig: &str, auth: &str) -> bool {
    let mut expected = Vec::with_capacity(key.len() + 1 + sig.len());
    expected.extend_from_slice(key.as_bytes());
    expected.push(b':');
    expected.extend_from_slice(sig.as_bytes());
    equal(&expected, auth.as_bytes())
}

/// Why a signed HTTP API request was refused (all 401 except `Malformed`: 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAuthError {
    /// A required query parameter is absent.
    Missing(&'static str),
    /// `auth_key` is not this app's key.
    WrongKey,
    /// `auth_version` is not 1.0.
    UnsupportedVersion,
    /// `auth_timestamp` is not within `MAX_CLOCK_SKEW` of the server's clock.
    Stale {
        /// The request's timestamp.
        timestamp: i64,
        /// The server's clock.
        now: i64,
    },
    /// `body_md5` does not match the body.
    BodyMd5,
    /// The signature does not match.
    Signature {
        /// What the client should have signed.
        string_to_sign: String,
    },
    /// The query string is malformed.
    Malformed(String),
}

impl RequestAuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RequestAuthError::Malformed(_) => 400,
            _ => 401,
        }
    }

    /// A plain-text explanation like Pusher's, saying what to send instead.
    pub fn message(&self) -> String {
        match self {
            RequestAuthError::Missing(p) => format!("Missing query parameter: {p}"),
            RequestAuthError::WrongKey => "Unknown auth_key: it does not belong to this app".into(),
            RequestAuthError::UnsupportedVersion => "Unsupported auth_version: use 1.0".into(),
            RequestAuthError::Stale { timestamp, now } => {
                format!("Timestamp expired: given timestamp {timestamp} not within 600s of server time {now}")
            }
            RequestAuthError::BodyMd5 => {
                "Invalid body_md5: it must be the hex MD5 of the request body".into()
            }
            RequestAuthError::Signature { string_to_sign } => format!(
                "Invalid signature: you should have sent HmacSHA256Hex({:?}, your_secret_key)",
                string_to_sign
            ),
            RequestAuthError::Malformed(why) => why.clone(),
        }
    }
}

/// Seconds an HTTP API request's `auth_timestamp` may differ from the server's clock.
pub const MAX_CLOCK_SKEW: u64 = 600;

/// Verifies Pusher HTTP API request signing (auth_key, auth_timestamp within ±600 s,
/// auth_version 1.0, body_md5, auth_signature over "METHOD\nPATH\nsorted query"). Returns the
/// decoded query parameters on success.
pub fn verify_request(
    method: &str,
    path: &str,
    raw_query: &str,
    body: &[u8],
    key: &str,
    secret: &str,
    now: i64,
) -> Result<Vec<(String, String)>, RequestAuthError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        let k = k.to_ascii_lowercase();
        if params.iter().any(|(p, _)| *p == k) {
            return Err(RequestAuthError::Malformed(format!("duplicate query parameter {k}")));
        }
        params.push((k, v.into_owned()));
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let auth_key = get("auth_key").ok_or(RequestAuthError::Missing("auth_key"))?;
    let signature = get("auth_signature").ok_or(RequestAuthError::Missing("auth_signature"))?.to_string();
    let timestamp = get("auth_timestamp").ok_or(RequestAuthError::Missing("auth_timestamp"))?;
    let version = get("auth_version").ok_or(RequestAuthError::Missing("auth_version"))?;
    if !equal(auth_key.as_bytes(), key.as_bytes()) {
        return Err(RequestAuthError::WrongKey);
    }
    if version != "1.0" {
        return Err(RequestAuthError::UnsupportedVersion);
    }
    let ts: i64 = timestamp.parse().map_err(|_| RequestAuthError::Stale { timestamp: 0, now })?;
    // `abs_diff`: an attacker-chosen timestamp near i64::MIN/MAX must neither overflow nor pass.
    if ts.abs_diff(now) > MAX_CLOCK_SKEW {
        return Err(RequestAuthError::Stale { timestamp: ts, now });
    }
    match get("body_md5") {
        Some(md5) => {
            let actual = format!("{:x}", md5::compute(body));
            if !equal(md5.as_bytes(), actual.as_bytes()) {
                return Err(RequestAuthError::BodyMd5);
            }
        }
        None if !body.is_empty() => return Err(RequestAuthError::Missing("body_md5")),
        None => {}
    }
    let mut signed: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "auth_signature").collect();
    signed.sort();
    let query = signed.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let string_to_sign = format!("{method}\n{path}\n{query}");
    let expected = sign(secret, &[string_to_sign.as_bytes()]);
    if !equal(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes()) {
        return Err(RequestAuthError::Signature { string_to_sign });
    }
    params.retain(|(k, _)| k != "auth_signature");
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn documented_channel_and_signin_vectors() {
        let auth = format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        assert!(channel_auth_ok(KEY, SECRET, "1234.1234", "private-foobar", None, &auth));
        assert!(!channel_auth_ok(KEY, SECRET, "1234.1235", "private-foobar", None, &auth));
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        let auth = format!("{KEY}:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c");
        assert!(channel_auth_ok(KEY, SECRET, "1234.1234", "presence-foobar", Some(data), &auth));
        let auth = format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba");
        assert!(signin_auth_ok(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#, &auth));
        assert!(!signin_auth_ok(KEY, SECRET, "1234.1234", r#"{"id":"12346"}"#, &auth));
    }

    #[test]
    fn documented_http_api_vector() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        let params = verify_request("POST", "/apps/3/events", q, body, KEY, SECRET, 1353088179).unwrap();
        assert!(params.iter().all(|(k, _)| k != "auth_signature"));
        assert!(matches!(
            verify_request("POST", "/apps/3/events", q, body, KEY, SECRET, 1353088179 + 601),
            Err(RequestAuthError::Stale { .. })
        ));
        assert_eq!(
            verify_request("POST", "/apps/3/events", q, b"{}", KEY, SECRET, 1353088179),
            Err(RequestAuthError::BodyMd5)
        );
        let tampered = q.replace("auth_version=1.0&", "auth_version=1.0&x=1&");
        assert!(matches!(
            verify_request("POST", "/apps/3/events", &tampered, body, KEY, SECRET, 1353088179),
            Err(RequestAuthError::Signature { .. })
        ));
    }

    #[test]
    fn query_values_are_decoded_before_signing() {
        let now = 1_700_000_000;
        let base = format!(
            "auth_key={KEY}&auth_timestamp={now}&auth_version=1.0&info=user_count,subscription_count"
        );
        let sig = sign(SECRET, &[format!("GET\n/apps/1/channels\n{base}").as_bytes()]);
        let encoded = base.replace(',', "%2C");
        assert!(
            verify_request(
                "GET",
                "/apps/1/channels",
                &format!("{encoded}&auth_signature={sig}"),
                b"",
                KEY,
                SECRET,
                now
            )
            .is_ok()
        );
        let no_body_md5 = verify_request(
            "POST",
            "/apps/1/events",
            &format!("{base}&auth_signature={sig}"),
            b"{}",
            KEY,
            SECRET,
            now,
        );
        assert_eq!(no_body_md5, Err(RequestAuthError::Missing("body_md5")));
    }

    /// Regression: `(ts - now).abs()` overflowed (a panic in debug builds) and in release let
    /// `i64::MIN` pass the freshness check.
    #[test]
    fn http_api_timestamp_overflow_is_stale() {
        let now = 1_700_000_000;
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1, now - 601, now + 601] {
            let base = format!("auth_key={KEY}&auth_timestamp={ts}&auth_version=1.0");
            let sig = sign(SECRET, &[format!("GET\n/apps/1/channels\n{base}").as_bytes()]);
            let q = format!("{base}&auth_signature={sig}");
            assert_eq!(
                verify_request("GET", "/apps/1/channels", &q, b"", KEY, SECRET, now),
                Err(RequestAuthError::Stale { timestamp: ts, now }),
                "timestamp {ts}"
            );
        }
        for ts in [now - 600, now + 600] {
            let base = format!("auth_key={KEY}&auth_timestamp={ts}&auth_version=1.0");
            let sig = sign(SECRET, &[format!("GET\n/apps/1/channels\n{base}").as_bytes()]);
            let q = format!("{base}&auth_signature={sig}");
            assert!(verify_request("GET", "/apps/1/channels", &q, b"", KEY, SECRET, now).is_ok(), "{ts}");
        }
    }
}
