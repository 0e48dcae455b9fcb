//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1), independent of any one
//! extension:
//!
//! ```text
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A quoted value must be a token once unescaped. The header may be split over several header
//! lines; their elements form one list, in order. Empty list elements are skipped (RFC 7230
//! §7). An element that breaks the grammar is reported as `Err` on its own: the elements
//! around it still parse (list elements are separated by commas outside quoted strings).

use std::borrow::Cow;

/// One offered extension: its name and parameters, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension's token, e.g. `permessage-deflate`.
    pub name: &'a str,
    /// Its parameters.
    pub params: Vec<Param<'a>>,
}

/// An extension parameter; `value` is unescaped when it was a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter's name.
    pub name: &'a str,
    /// Its value, if any.
    pub value: Option<Cow<'a, str>>,
}

/// An element of the list that does not follow the grammar; the offer it carried cannot be
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Every element of every given header value, in order.
pub fn parse_all<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = Result<Extension<'a>, Malformed>> {
    values.into_iter().flat_map(|value| match std::str::from_utf8(value) {
        Ok(text) => Elements { rest: text }.collect::<Vec<_>>(),
        // Tokens are ASCII: a value that is not even UTF-8 carries no acceptable offer.
        Err(_) => vec![Err(Malformed)],
    })
}

/// The elements of one header value.
struct Elements<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<Extension<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (element, rest) = split_element(self.rest);
            self.rest = rest;
            if element.trim_matches(is_ows).is_empty() {
                continue;
            }
            return Some(parse_element(element));
        }
    }
}

/// Splits off the first list element: up to the first comma outside a quoted string (the
/// comma is dropped). An unterminated quoted string runs to the end.
fn split_element(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b',' if !quoted => return (&s[..i], &s[i + 1..]),
            _ => {}
        }
        i += 1;
    }
    (s, "")
}

fn parse_element(element: &str) -> Result<Extension<'_>, Malformed> {
    let mut parts = Parts { rest: element };
    let name = parts.token()?;
    let mut params = Vec::new();
    loop {
        parts.skip_ows();
        if parts.rest.is_empty() {
            return Ok(Extension { name, params });
        }
        parts.expect(';')?;
        parts.skip_ows();
        let pname = parts.token()?;
        parts.skip_ows();
        let value = if parts.rest.starts_with('=') {
            parts.expect('=')?;
            parts.skip_ows();
            Some(if parts.rest.starts_with('"') { parts.quoted()? } else { Cow::Borrowed(parts.token()?) })
        } else {
            None
        };
        params.push(Param { name: pname, value });
    }
}

struct Parts<'a> {
    rest: &'a str,
}

impl<'a> Parts<'a> {
    fn skip_ows(&mut self) {
        self.rest = self.rest.trim_start_matches(is_ows);
    }

    fn expect(&mut self, c: char) -> Result<(), Malformed> {
        self.rest = self.rest.strip_prefix(c).ok_or(Malformed)?;
        Ok(())
    }

    fn token(&mut self) -> Result<&'a str, Malformed> {
        self.skip_ows();
        let end = self.rest.bytes().position(|b| !is_tchar(b)).unwrap_or(self.rest.len());
        if end == 0 {
            return Err(Malformed);
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(token)
    }

    /// A quoted string whose unescaped content must be a token (RFC 6455 §9.1).
    fn quoted(&mut self) -> Result<Cow<'a, str>, Malformed> {
        let body = self.rest.strip_prefix('"').ok_or(Malformed)?;
        let mut unescaped: Option<String> = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    let value = match unescaped {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(&body[..i]),
                    };
                    self.rest = &body[i + 1..];
                    if value.is_empty() || !value.bytes().all(is_tchar) {
                        return Err(Malformed);
                    }
                    return Ok(value);
                }
                '\\' => {
                    let (_, escaped) = chars.next().ok_or(Malformed)?;
                    unescaped.get_or_insert_with(|| body[..i].to_string()).push(escaped);
                }
                c => {
                    if let Some(s) = unescaped.as_mut() {
                        s.push(c);
                    }
                }
            }
        }
        Err(Malformed)
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Vec<Result<Extension<'static>, Malformed>> {
        let owned: Vec<&'static [u8]> =
            values.iter().map(|v| &*Box::leak(v.as_bytes().to_vec().into_boxed_slice())).collect();
        parse_all(owned).collect()
    }

    fn ext(name: &'static str, params: &[(&'static str, Option<&'static str>)]) -> Extension<'static> {
        Extension {
            name,
            params: params.iter().map(|(n, v)| Param { name: n, value: v.map(Cow::Borrowed) }).collect(),
        }
    }

    #[test]
    fn offers_with_params_across_elements_and_header_lines() {
        let got = parse(&[
            "permessage-deflate; client_max_window_bits, permessage-deflate;server_max_window_bits=10",
            " x-webkit-deflate-frame ,permessage-deflate ; client_no_context_takeover ",
        ]);
        assert_eq!(
            got,
            vec![
                Ok(ext("permessage-deflate", &[("client_max_window_bits", None)])),
                Ok(ext("permessage-deflate", &[("server_max_window_bits", Some("10"))])),
                Ok(ext("x-webkit-deflate-frame", &[])),
                Ok(ext("permessage-deflate", &[("client_no_context_takeover", None)])),
            ]
        );
    }

    #[test]
    fn quoted_values_are_unescaped_and_must_be_tokens() {
        let got = parse(&[r#"a; p="10", b; p="1\5", c; p="x y", d; p="", e; p = "9" "#]);
        assert_eq!(got[0], Ok(ext("a", &[("p", Some("10"))])));
        assert_eq!(got[1].as_ref().unwrap().params[0].value.as_deref(), Some("15"));
        assert_eq!(got[2], Err(Malformed), "a space is not a token character");
        assert_eq!(got[3], Err(Malformed), "an empty value is not a token");
        assert_eq!(got[4], Ok(ext("e", &[("p", Some("9"))])), "whitespace around '=' is allowed");
    }

    #[test]
    fn a_comma_inside_quotes_does_not_split_the_list() {
        let got = parse(&[r#"a; p="x,y", b"#]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Err(Malformed), "the unescaped value x,y is not a token");
        assert_eq!(got[1], Ok(ext("b", &[])));
    }

    #[test]
    fn broken_elements_are_reported_one_by_one() {
        let got = parse(&["a;, ;p, b;p=, c p, d;p=1=2, e, f; p=\"open"]);
        assert_eq!(
            got,
            vec![
                Err(Malformed),
                Err(Malformed),
                Err(Malformed),
                Err(Malformed),
                Err(Malformed),
                Ok(ext("e", &[])),
                Err(Malformed),
            ]
        );
    }

    #[test]
    fn empty_elements_and_values_are_skipped() {
        assert_eq!(parse(&["", " , ,", "a,,"]), vec![Ok(ext("a", &[]))]);
    }

    #[test]
    fn non_utf8_header_is_malformed() {
        let raw: &'static [u8] = b"permessage-deflate\xff";
        assert_eq!(parse_all([raw]).collect::<Vec<_>>(), vec![Err(Malformed)]);
    }
}
