//! Flink's URL functions: `PARSE_URL`, which takes a URL apart as Java's
//! `java.net.URL` does (Flink calls it; so a URL Java refuses gives NULL, and one it
//! accepts loosely, with spaces or no host, gives Java's parts), and `URL_ENCODE` /
//! `URL_DECODE`, Java's `URLEncoder` / `URLDecoder` in UTF-8. Every part is a slice
//! of the row's text: nothing is allocated per row.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::flink_fn::{string, FlinkFn, Param, Strs};

/// Flink's URL functions.
pub(super) fn functions() -> Vec<ScalarUDF> {
    use Param::Str;
    vec![
        FlinkFn::new("PARSE_URL", "PARSE_URL(url, part[, key])", &[Str, Str, Str], 2, string, parse_url).udf(),
        FlinkFn::new("URL_ENCODE", "URL_ENCODE(text)", &[Str], 1, string, url_encode).udf(),
        FlinkFn::new("URL_DECODE", "URL_DECODE(text)", &[Str], 1, string, url_decode).udf(),
    ]
}

/// The parts of a URL, as `java.net.URL`'s getters return them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Url<'a> {
    /// Lower case, one of [`PROTOCOLS`].
    protocol: &'static str,
    /// Empty when there is none (never NULL in Java).
    host: &'a str,
    /// Empty when there is none; NULL only for a bare `jar:#reference`.
    path: Option<&'a str>,
    query: Option<&'a str>,
    reference: Option<&'a str>,
    authority: Option<&'a str>,
    user_info: Option<&'a str>,
}

/// The protocols Java 17 has a handler for; `new URL` refuses any other.
const PROTOCOLS: [&str; 8] = ["http", "https", "ftp", "file", "jar", "mailto", "jrt", "jmod"];

/// Characters Java refuses in a host: the control characters and those that
/// Unicode normalization turns into `/`, `?`, `#`, `@` or `:`.
fn forbidden_in_host(c: char) -> bool {
    const LOOKALIKES: [u32; 17] =
        [0x2047, 0x2048, 0x2049, 0x2100, 0x2101, 0x2105, 0x2106, 0x2a74, 0xfe55, 0xfe56, 0xfe5f, 0xfe6b, 0xff03, 0xff0f, 0xff1a, 0xff1f, 0xff20];
    c < ' ' || c == '\u{7f}' || LOOKALIKES.contains(&u32::from(c))
}

/// Whether `text` is a port Java's `Integer.parseInt` reads (an optional sign, then
/// ASCII digits, within an INT), and the port is not below -1.
fn valid_port(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && text.parse::<i32>().is_ok_and(|port| port >= -1)
}

/// Whether `text` (between `[` and `]`) is an IPv6 address, with an optional `%zone`.
fn ipv6_literal(text: &str) -> bool {
    let address = text.split_once('%').map_or(text, |(address, _)| address);
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `text` split at its last `?` into a path and a query, as `URL.set` does for handlers that give a whole file.
fn path_and_query(text: &str) -> (&str, Option<&str>) {
    match text.rfind('?') {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

/// `new URL(spec)`: None where Java throws `MalformedURLException`.
fn parse(spec: &str) -> Option<Url<'_>> {
    parse_nested(spec, 0)
}

/// How deep `jar:` URLs may nest (each checks the URL inside it) before one is refused.
const MAX_NESTING: usize = 16;

/// [`parse`], `depth` `jar:` URLs down.
fn parse_nested(spec: &str, depth: usize) -> Option<Url<'_>> {
    let bytes = spec.as_bytes();
    // Java trims characters up to ' ' from both ends (all ASCII, so bytes will do).
    let mut limit = bytes.len();
    while limit > 0 && bytes[limit - 1] <= b' ' {
        limit -= 1;
    }
    let mut start = 0;
    while start < limit && bytes[start] <= b' ' {
        start += 1;
    }
    if spec[start..limit].get(..4).is_some_and(|prefix| prefix.eq_ignore_ascii_case("url:")) {
        start += 4;
    }
    if bytes.get(start) == Some(&b'#') {
        return None;
    }
    let colon = bytes[start..limit].iter().position(|&b| b == b':' || b == b'/').filter(|&at| bytes[start + at] == b':')? + start;
    let protocol = PROTOCOLS.into_iter().find(|p| p.eq_ignore_ascii_case(&spec[start..colon]))?;
    start = colon + 1;
    let mut reference = None;
    if let Some(hash) = spec[start..].find('#').map(|at| at + start) {
        reference = Some(&spec[(hash + 1).min(limit)..limit]);
        limit = hash;
    }
    match protocol {
        "mailto" => {
            let file = &spec[start..limit];
            if file.chars().all(char::is_whitespace) {
                return None;
            }
            let (path, query) = path_and_query(file);
            Some(Url { protocol, host: "", path: Some(path), query, reference: None, authority: None, user_info: None })
        }
        "jar" => {
            // The jar handler takes the reference to the end of the text, untrimmed.
            let reference = spec[limit..].strip_prefix('#');
            // A spec that does not start `jar:` as written (leading spaces, `url:`) is
            // relative to no URL: only a bare `#reference` is taken from it.
            if !spec.get(..4).is_some_and(|prefix| prefix.eq_ignore_ascii_case("jar:")) {
                return (reference.is_some() && limit == start).then_some(Url {
                    protocol,
                    host: "",
                    path: None,
                    query: None,
                    reference,
                    authority: None,
                    user_info: None,
                });
            }
            let file = &spec[start..limit];
            let bang = file.match_indices("!/").last()?.0;
            if depth >= MAX_NESTING {
                return None;
            }
            parse_nested(&file[..bang], depth + 1)?;
            let (path, query) = path_and_query(file);
            Some(Url { protocol, host: "", path: Some(path), query, reference, authority: None, user_info: None })
        }
        _ => parse_hierarchical(spec, protocol, start, limit, reference),
    }
}

/// `URLStreamHandler.parseURL`, which every other protocol uses: `//authority`,
/// then the path, then `?query`.
fn parse_hierarchical<'a>(spec: &'a str, protocol: &'static str, mut start: usize, mut limit: usize, reference: Option<&'a str>) -> Option<Url<'a>> {
    let bytes = spec.as_bytes();
    let mut query = None;
    if start < limit {
        if let Some(at) = spec.find('?').filter(|&at| at < limit) {
            query = Some(&spec[at + 1..limit]);
            limit = at;
        }
    }
    let (mut host, mut authority, mut user_info, mut path) = ("", None, None, None);
    let unc = start + 4 <= limit && &bytes[start..start + 4] == b"////";
    if !unc && start + 2 <= limit && &bytes[start..start + 2] == b"//" {
        start += 2;
        let end = spec[start..limit].find('/').map_or(limit, |at| at + start);
        let whole = &spec[start..end];
        authority = Some(whole);
        let named = match whole.find('@') {
            Some(at) if whole.rfind('@') != Some(at) => None,
            Some(at) => {
                user_info = Some(&whole[..at]);
                Some(&whole[at + 1..])
            }
            None => Some(whole),
        };
        if let Some(named) = named {
            if named.starts_with('[') {
                let close = named.find(']').filter(|&at| at > 2)?;
                if !ipv6_literal(&named[1..close]) {
                    return None;
                }
                host = &named[..=close];
                match named[close + 1..].strip_prefix(':') {
                    Some(port) if !port.is_empty() && !valid_port(port) => return None,
                    Some(_) => {}
                    None if close + 1 < named.len() => return None,
                    None => {}
                }
            } else {
                host = named;
                if let Some(colon) = named.find(':') {
                    let port = &named[colon + 1..];
                    if !port.is_empty() && !valid_port(port) {
                        return None;
                    }
                    host = &named[..colon];
                }
                if host.chars().any(forbidden_in_host) {
                    return None;
                }
            }
        }
        start = end;
        if !whole.is_empty() {
            path = Some("");
        }
    }
    if start < limit {
        path = Some(&spec[start..limit]);
    }
    Some(Url { protocol, host, path: Some(path.unwrap_or("")), query, reference, authority, user_info })
}

/// The first value of `key` in a query (`key=value`, pairs split at `&`), as Flink
/// finds it with the regex `(&|^)key=([^&]*)`.
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    let bytes = query.as_bytes();
    let value_at = |at: usize| {
        let rest = query.get(at..)?.strip_prefix(key)?.strip_prefix('=')?;
        Some(&rest[..rest.find('&').unwrap_or(rest.len())])
    };
    // The regex tries each start in turn, `&key=` before `^key=` at the first.
    (0..=bytes.len()).find_map(|at| {
        let after_amp = (bytes.get(at) == Some(&b'&')).then(|| value_at(at + 1)).flatten();
        after_amp.or_else(|| if at == 0 { value_at(0) } else { None })
    })
}

/// `PARSE_URL(url, part[, key])`: the `part` (HOST, PATH, QUERY, REF, PROTOCOL,
/// FILE, AUTHORITY or USERINFO, upper case) of the URL; with `key`, the value of
/// that key in the QUERY. NULL for a URL Java refuses, a part that is none of those
/// or absent from the URL, a key it lacks, and a key with any part but QUERY.
fn parse_url(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let urls = Strs::of(&args[0])?;
    let parts = Strs::of(&args[1])?;
    let keys = args.get(2).map(Strs::of).transpose()?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let failed = |e: std::fmt::Error| DataFusionError::Execution(format!("PARSE_URL: {e}"));
    for i in 0..rows {
        let (Some(text), Some(part)) = (urls.get(i), parts.get(i)) else {
            out.append_null();
            continue;
        };
        let key = match &keys {
            Some(keys) => match keys.get(i) {
                Some(key) if part == "QUERY" => Some(key),
                _ => {
                    out.append_null();
                    continue;
                }
            },
            None => None,
        };
        let Some(url) = parse(text) else {
            out.append_null();
            continue;
        };
        let value = match part {
            "HOST" => Some(url.host),
            "PATH" => url.path,
            "QUERY" => match key {
                Some(key) => url.query.and_then(|query| query_value(query, key)),
                None => url.query,
            },
            "REF" => url.reference,
            "PROTOCOL" => Some(url.protocol),
            "FILE" => match url.path {
                Some(path) => {
                    out.write_str(path).map_err(failed)?;
                    if let Some(query) = url.query {
                        out.write_char('?').map_err(failed)?;
                        out.write_str(query).map_err(failed)?;
                    }
                    Some("")
                }
                None => None,
            },
            "AUTHORITY" => url.authority,
            "USERINFO" => url.user_info,
            _ => None,
        };
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

/// Java's `URLEncoder.encode(text, UTF-8)` written to `out`: letters, digits and
/// `.-*_` stay, a space becomes `+`, every other byte of the UTF-8 text `%XX`.
fn url_encode_into(text: &str, out: &mut impl Write) -> std::fmt::Result {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let stays = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*' | b'_');
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        // A run that stays as it is is copied whole: it is ASCII, so its ends are
        // character boundaries (`at` may be inside a character being escaped byte by byte).
        let run = bytes[at..].iter().position(|&b| !stays(b)).map_or(bytes.len(), |n| n + at);
        if run > at {
            out.write_str(&text[at..run])?;
        }
        let Some(&byte) = bytes.get(run) else { break };
        if byte == b' ' {
            out.write_char('+')?;
        } else {
            for c in [b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]] {
                out.write_char(char::from(c))?;
            }
        }
        at = run + 1;
    }
    Ok(())
}

/// `URL_ENCODE(text)`: [`url_encode_into`] of each row.
fn url_encode(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    for i in 0..rows {
        match texts.get(i) {
            Some(text) => {
                url_encode_into(text, &mut out).map_err(|e| DataFusionError::Execution(format!("URL_ENCODE: {e}")))?;
                out.append_value("");
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// One `%XX` escape as Java's `URLDecoder` reads it (`Integer.parseInt(XX, 16)`,
/// which takes a sign: `%+1` is 1, `%-0` is 0); None where Java fails.
fn escaped_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    match pair {
        [b'+', d] => digit(*d),
        [b'-', d] => digit(*d).filter(|&d| d == 0),
        [high, low] => Some(digit(*high)? * 16 + digit(*low)?),
        _ => None,
    }
}

/// Java's `URLDecoder.decode(text, UTF-8)` written to `out`: `+` is a space, each
/// run of `%XX` escapes is UTF-8 (bytes that are none become U+FFFD). False, with
/// nothing written, for an incomplete or malformed escape (Java throws).
/// `run` is a buffer reused across rows.
fn url_decode_into(text: &str, out: &mut impl Write, run: &mut Vec<u8>) -> std::result::Result<bool, std::fmt::Error> {
    let bytes = text.as_bytes();
    // Checked first, so nothing is written for a text Java refuses.
    if !bytes.iter().enumerate().filter(|(_, &b)| b == b'%').all(|(at, _)| bytes.get(at + 1..at + 3).and_then(escaped_byte).is_some()) {
        return Ok(false);
    }
    let mut at = 0;
    while at < bytes.len() {
        let plain = bytes[at..].iter().position(|&b| b == b'%' || b == b'+').map_or(bytes.len(), |n| n + at);
        out.write_str(&text[at..plain])?;
        at = plain;
        match bytes.get(at) {
            Some(b'+') => {
                out.write_char(' ')?;
                at += 1;
            }
            Some(_) => {
                // A run of escapes is decoded as one piece of UTF-8, as Java does.
                run.clear();
                while let Some(byte) = (bytes.get(at) == Some(&b'%')).then(|| bytes.get(at + 1..at + 3).and_then(escaped_byte)).flatten() {
                    run.push(byte);
                    at += 3;
                }
                out.write_str(&String::from_utf8_lossy(run))?;
            }
            None => {}
        }
    }
    Ok(true)
}

/// `URL_DECODE(text)`: [`url_decode_into`] of each row; NULL where Java fails.
fn url_decode(args: &[ColumnarValue], rows: usize) -> Result<ArrayRef> {
    let texts = Strs::of(&args[0])?;
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut run = Vec::new();
    for i in 0..rows {
        let Some(text) = texts.get(i) else {
            out.append_null();
            continue;
        };
        if url_decode_into(text, &mut out, &mut run).map_err(|e| DataFusionError::Execution(format!("URL_DECODE: {e}")))? {
            out.append_value("");
        } else {
            out.append_null();
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each URL's parts as `java.net.URL` (Java 17) gives them, from
    /// protocol to user info; `None` where Java refuses the URL.
    #[test]
    fn urls_are_taken_apart_as_java_does() {
        type Parts<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[(&str, Option<Parts>)] = &[
            (
                "http://facebook.com/path1/p.php?k1=v1&k2=v2#Ref1",
                Some(("http", "facebook.com", Some("/path1/p.php"), Some("k1=v1&k2=v2"), Some("Ref1"), Some("facebook.com"), None)),
            ),
            (
                "https://user:pw@example.com:8080/a/b?x=1#frag",
                Some(("https", "example.com", Some("/a/b"), Some("x=1"), Some("frag"), Some("user:pw@example.com:8080"), Some("user:pw"))),
            ),
            ("http://example.com", Some(("http", "example.com", Some(""), None, None, Some("example.com"), None))),
            ("http://example.com#x?y", Some(("http", "example.com", Some(""), None, Some("x?y"), Some("example.com"), None))),
            ("http://example.com/a?b#c?d#e", Some(("http", "example.com", Some("/a"), Some("b"), Some("c?d#e"), Some("example.com"), None))),
            ("http:/example.com/a", Some(("http", "", Some("/example.com/a"), None, None, None, None))),
            ("http:example.com/a", Some(("http", "", Some("example.com/a"), None, None, None, None))),
            ("http:///a", Some(("http", "", Some("/a"), None, None, Some(""), None))),
            ("http:", Some(("http", "", Some(""), None, None, None, None))),
            ("http:?q", Some(("http", "", Some(""), Some("q"), None, None, None))),
            ("HTTP://Example.COM/P", Some(("http", "Example.COM", Some("/P"), None, None, Some("Example.COM"), None))),
            ("  url:http://example.com/x  ", Some(("http", "example.com", Some("/x"), None, None, Some("example.com"), None))),
            ("http://example.com:abc/", None),
            ("http://example.com:-1/x", Some(("http", "example.com", Some("/x"), None, None, Some("example.com:-1"), None))),
            ("http://h:-2/", None),
            ("http://h:2147483648/", None),
            ("http://exa mple.com/a b", Some(("http", "exa mple.com", Some("/a b"), None, None, Some("exa mple.com"), None))),
            ("ftp://a@b@c/x", Some(("ftp", "", Some("/x"), None, None, Some("a@b@c"), None))),
            ("http://[::1]:80/x", Some(("http", "[::1]", Some("/x"), None, None, Some("[::1]:80"), None))),
            ("http://[::1]x/", None),
            ("http://[zz]/", None),
            ("https://////x", Some(("https", "", Some("//////x"), None, None, None, None))),
            ("mailto:someone@example.com?subject=hi", Some(("mailto", "", Some("someone@example.com"), Some("subject=hi"), None, None, None))),
            ("mailto:a?b?c", Some(("mailto", "", Some("a?b"), Some("c"), None, None, None))),
            ("mailto:   ", None),
            ("jar:http://x/a.jar!/b?q#r", Some(("jar", "", Some("http://x/a.jar!/b"), Some("q"), Some("r"), None, None))),
            ("jar:file:/a.jar", None),
            ("jar:bad:/a.jar!/b", None),
            ("  jar:file:/a.jar!/b", None),
            ("foo://example.com/path", None),
            ("example.com/path", None),
            ("#frag", None),
            ("http://x\u{1}.com/a", None),
            ("http://x\u{ff0f}.com/a", None),
            ("http://us\ter@x.com/", Some(("http", "x.com", Some("/"), None, None, Some("us\ter@x.com"), Some("us\ter")))),
            ("http://x/?#", Some(("http", "x", Some("/"), Some(""), Some(""), Some("x"), None))),
            (" jar:#ref  ", Some(("jar", "", None, None, Some("ref  "), None, None))),
        ];
        for (spec, expected) in cases {
            let got = parse(spec).map(|u| (u.protocol, u.host, u.path, u.query, u.reference, u.authority, u.user_info));
            assert_eq!(got, *expected, "{spec}");
        }
    }

    #[test]
    fn a_query_value_is_found_after_a_start_or_an_ampersand() {
        assert_eq!(query_value("k1=v1&k2=v2", "k2"), Some("v2"));
        assert_eq!(query_value("xa=1&a=2", "a"), Some("2"));
        assert_eq!(query_value("a=&b=2", "a"), Some(""));
        assert_eq!(query_value("a.b=1&ab=2", "a.b"), Some("1"));
        assert_eq!(query_value("ab=2", "a"), None);
    }

    #[test]
    fn escapes_read_as_javas_url_decoder_reads_them() {
        assert_eq!(escaped_byte(b"2F"), Some(0x2f));
        assert_eq!(escaped_byte(b"+1"), Some(1));
        assert_eq!(escaped_byte(b"-0"), Some(0));
        assert_eq!(escaped_byte(b"-1"), None);
        assert_eq!(escaped_byte(b"zz"), None);
    }
}
