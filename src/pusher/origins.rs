//! Origin checks at the WebSocket handshake: an app's `allowed_origins` patterns and the
//! `Origin` header they are matched against.
//!
//! A pattern is `*` (any origin), or `[scheme://]host[:port]` where the host may start with
//! `*.` (any subdomain, at any depth, but not the domain itself). Without a scheme any scheme
//! matches; without a port any port matches (as Laravel Reverb's host patterns do). Hosts
//! compare case-insensitively. A request without an `Origin` header (or with `null`) matches
//! only `*`: browsers always send one, and an app that lists origins wants browsers held to them.

/// One `allowed_origins` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `*`.
    Any,
    /// `[scheme://]host[:port]`.
    Host {
        /// Lower case; None: any scheme.
        scheme: Option<String>,
        /// Lower case; with `wildcard`, the part after `*.`.
        host: String,
        /// `*.host`: any subdomain of `host`.
        wildcard: bool,
        /// None: any port.
        port: Option<u16>,
    },
}

/// An origin as sent by a browser: `scheme://host[:port]`.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

/// Splits `host[:port]` (the host may be a bracketed IPv6 literal).
fn host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')? + 1;
        match &s[end..] {
            "" => (&s[..end], None),
            rest => (&s[..end], Some(rest.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

fn valid_host(host: &str) -> bool {
    host.starts_with('[') && host.ends_with(']')
        || host.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

fn parse_origin(header: &str) -> Option<Origin<'_>> {
    let (scheme, rest) = header.split_once("://")?;
    if scheme.is_empty() || rest.contains('/') {
        return None;
    }
    let (host, port) = host_port(rest)?;
    Some(Origin { scheme, host, port })
}

impl Pattern {
    /// Parses an `allowed_origins` entry; the error says what is wrong with it.
    pub(crate) fn parse(s: &str) -> Result<Pattern, String> {
        let bad = |why: &str| format!("allowed_origins entry {s:?} {why}");
        if s == "*" {
            return Ok(Pattern::Any);
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => {
                if scheme.is_empty() || !scheme.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+') {
                    return Err(bad("has an invalid scheme"));
                }
                (Some(scheme.to_ascii_lowercase()), rest)
            }
            None => (None, s),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("must not have a path: use scheme://host[:port]"));
        }
        let Some((host, port)) = host_port(rest) else {
            return Err(bad("needs a host (and, after ':', a port number)"));
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, host),
        };
        if host.is_empty() || host.contains('*') || !valid_host(host) {
            return Err(bad("has an invalid host (use example.com, *.example.com or *)"));
        }
        Ok(Pattern::Host { scheme, host: host.to_ascii_lowercase(), wildcard, port })
    }

    fn matches(&self, origin: Option<&Origin<'_>>) -> bool {
        let (scheme, host, wildcard, port) = match self {
            Pattern::Any => return true,
            Pattern::Host { scheme, host, wildcard, port } => (scheme, host, *wildcard, *port),
        };
        let Some(o) = origin else { return false };
        if scheme.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case(o.scheme)) {
            return false;
        }
        if port.is_some() && port != o.port {
            return false;
        }
        if wildcard {
            o.host.len() > host.len() + 1
                && o.host[o.host.len() - host.len()..].eq_ignore_ascii_case(host)
                && o.host.as_bytes()[o.host.len() - host.len() - 1] == b'.'
        } else {
            o.host.eq_ignore_ascii_case(host)
        }
    }
}

/// Whether a handshake with this `Origin` header (None: absent) may open a connection to an
/// app with these patterns (none: every origin may).
pub(crate) fn allowed(patterns: &[Pattern], origin: Option<&str>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let parsed = origin.filter(|o| !o.eq_ignore_ascii_case("null")).and_then(parse_origin);
    patterns.iter().any(|p| p.matches(parsed.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn exact_hosts_match_any_scheme_and_port_unless_given() {
        let p = pats(&["app.example.com"]);
        assert!(allowed(&p, Some("https://app.example.com")));
        assert!(allowed(&p, Some("http://APP.example.com:8080")));
        assert!(!allowed(&p, Some("https://evil.com")));
        assert!(!allowed(&p, Some("https://app.example.com.evil.com")));
        let p = pats(&["https://app.example.com:8443"]);
        assert!(allowed(&p, Some("https://app.example.com:8443")));
        assert!(!allowed(&p, Some("http://app.example.com:8443")), "scheme given");
        assert!(!allowed(&p, Some("https://app.example.com")), "port given");
        let p = pats(&["localhost:3000", "http://[::1]:3000"]);
        assert!(allowed(&p, Some("http://localhost:3000")));
        assert!(!allowed(&p, Some("http://localhost:3001")));
        assert!(allowed(&p, Some("http://[::1]:3000")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = pats(&["*.example.com"]);
        assert!(allowed(&p, Some("https://a.example.com")));
        assert!(allowed(&p, Some("https://a.b.example.com:444")));
        assert!(!allowed(&p, Some("https://example.com")), "not the domain itself");
        assert!(!allowed(&p, Some("https://badexample.com")));
        let p = pats(&["https://*.example.com"]);
        assert!(!allowed(&p, Some("http://a.example.com")));
    }

    #[test]
    fn a_missing_or_null_origin_matches_only_the_star() {
        assert!(allowed(&[], None), "no patterns: everything");
        let p = pats(&["example.com"]);
        assert!(!allowed(&p, None));
        assert!(!allowed(&p, Some("null")));
        assert!(!allowed(&p, Some("garbage")));
        assert!(allowed(&pats(&["example.com", "*"]), None));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in ["", "https://", "example.com/path", "a.*.com", "*", "ex ample.com", "host:port"] {
            if bad == "*" {
                assert_eq!(Pattern::parse(bad), Ok(Pattern::Any));
                continue;
            }
            let e = Pattern::parse(bad).unwrap_err();
            assert!(e.contains("allowed_origins") && !e.contains('\n'), "{e}");
        }
        assert!(Pattern::parse("https://example.com/").is_ok(), "a trailing slash is tolerated");
    }
}
