//! HTTP/1.1 request heads and responses, with limits. Parsing is httparse's; this file adds the
//! limits, the few headers the server cares about, and response encoding.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest request head (request line + headers + blank line) accepted; larger → 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers accepted in one request; more → 431.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head. Borrowed from the read buffer; copy out what must outlive it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The method (GET, POST, ...).
    pub method: &'a str,
    /// The request target as sent: path and query.
    pub target: &'a str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header names and values, in order.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Length of the head in bytes, including the final CRLF CRLF.
    pub head_len: usize,
}

impl<'a> Request<'a> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// A header's value as trimmed UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok()).map(str::trim)
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The target's path (before `?`).
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The target's query string (after `?`; empty if none).
    pub fn query(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// Whether the connection stays open after the response (HTTP/1.1 default, 1.0 opt-in).
    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("Connection", "close") {
            return false;
        }
        self.version >= 1 || self.header_has_token("Connection", "keep-alive")
    }

    /// The declared body length: `Ok(0)` without one; chunked bodies are refused (411/400).
    pub fn content_length(&self) -> Result<usize, HeadError> {
        if self.header("Transfer-Encoding").is_some() {
            return Err(HeadError::LengthRequired);
        }
        let mut found: Option<usize> = None;
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                let v = std::str::from_utf8(v).map_err(|_| HeadError::Malformed)?.trim();
                let len = v.parse::<usize>().map_err(|_| HeadError::Malformed)?;
                if found.is_some_and(|f| f != len) {
                    return Err(HeadError::Malformed);
                }
                found = Some(len);
            }
        }
        Ok(found.unwrap_or(0))
    }
}

/// Why a request head was refused, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x or not parseable: 400.
    Malformed,
    /// Head over `MAX_HEAD` bytes or over `MAX_HEADERS` headers: 431.
    TooLarge,
    /// A body without Content-Length (chunked): 411.
    LengthRequired,
}

impl HeadError {
    /// The status to answer with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed => 400,
            HeadError::TooLarge => 431,
            HeadError::LengthRequired => 411,
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more (the
/// caller must refuse once `buf` reaches `MAX_HEAD` bytes — `parse` does that itself).
pub fn parse(buf: &[u8]) -> Result<Option<Request<'_>>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let headers = req.headers.iter().map(|h| (h.name, h.value)).collect();
            Ok(Some(Request {
                method: req.method.ok_or(HeadError::Malformed)?,
                target: req.path.ok_or(HeadError::Malformed)?,
                version: req.version.ok_or(HeadError::Malformed)?,
                headers,
                head_len,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Encodes a complete response with a body. `keep_alive` chooses the `Connection` header.
pub fn response(
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + body.len());
    let _ = std::fmt::Write::write_fmt(
        &mut Fmt(&mut out),
        format_args!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            reason(status),
            body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        ),
    );
    for (name, value) in extra_headers {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// A plain-text response (body gets a trailing newline).
pub fn text(status: u16, body: &str, extra_headers: &[(&str, &str)], keep_alive: bool) -> Bytes {
    let mut b = String::with_capacity(body.len() + 1);
    b.push_str(body);
    b.push('\n');
    response(status, extra_headers, "text/plain; charset=utf-8", b.as_bytes(), keep_alive)
}

struct Fmt<'a>(&'a mut BytesMut);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head_and_reports_its_length() {
        let raw = b"GET /app/k?protocol=7 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\nrest";
        let req = parse(raw).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path(), "/app/k");
        assert_eq!(req.query(), "protocol=7");
        assert_eq!(req.head_len, raw.len() - 4);
        assert!(req.header_has_token("connection", "upgrade"));
        assert!(req.keep_alive());
    }

    #[test]
    fn partial_head_needs_more_until_the_limit() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big).unwrap_err(), HeadError::TooLarge);
        assert_eq!(HeadError::TooLarge.status(), 431);
    }

    #[test]
    fn too_many_headers_is_431_and_garbage_is_400() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend(format!("X-{i}: y\r\n").bytes());
        }
        raw.extend(b"\r\n");
        assert_eq!(parse(&raw).unwrap_err(), HeadError::TooLarge);
        assert_eq!(parse(b"\x16\x03\x01garbage\r\n\r\n").unwrap_err(), HeadError::Malformed);
    }

    #[test]
    fn content_length_rules() {
        let req = parse(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.content_length(), Ok(12));
        let req = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.content_length(), Err(HeadError::LengthRequired));
        let req =
            parse(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.content_length(), Err(HeadError::Malformed));
    }

    #[test]
    fn http10_closes_unless_asked() {
        let req = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!req.keep_alive());
        let req = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!req.keep_alive());
    }

    #[test]
    fn response_has_length_and_connection() {
        let r = text(404, "not found", &[], true);
        let s = std::str::from_utf8(&r).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 10\r\n"));
        assert!(s.contains("Connection: keep-alive\r\n"));
        assert!(s.ends_with("\r\n\r\nnot found\n"));
    }
}
