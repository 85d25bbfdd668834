//! JSON documents and the SQL/JSON paths Flink's JSON functions take
//! (`lax $.a.b[0]`, `strict $['k'][*]`), as Flink evaluates them: Calcite reads
//! the path with Jayway JsonPath over Jackson's tree, so a number keeps its
//! text (a BigDecimal: `1e2` is `1E+2`), objects are written with their keys
//! sorted, whatever follows the first value is ignored, and a path with a
//! wildcard selects a list of values rather than one.

use std::borrow::Cow;
use std::fmt::Write;

/// A parsed JSON document, borrowing from its text: objects keep their keys
/// in document order (as Jackson's maps do) and numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json<'a> {
    Null,
    Bool(bool),
    /// A number as written; printed as Jackson reads it (an integer, or a BigDecimal).
    Number(&'a str),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The document in `text`, or None when it is no JSON. As Jackson reads
    /// it for Flink, whatever follows the first complete value is ignored.
    pub(super) fn parse(text: &'a str) -> Option<Json<'a>> {
        Reader::new(text).value()
    }

    /// Whether this is an array or object (what `JSON_QUERY` returns; `JSON_VALUE` refuses them).
    pub(super) fn is_container(&self) -> bool {
        matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// The value as `JSON_VALUE` returns it: a string's text, a number or boolean
    /// as Java prints it; None for null (and for containers).
    pub(super) fn scalar_text(&self, out: &mut String) -> Option<()> {
        match self {
            Json::Str(s) => out.push_str(s),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => java_number(n, out),
            Json::Null | Json::Array(_) | Json::Object(_) => return None,
        }
        Some(())
    }

    /// Compact JSON text, as Flink's Jackson writes it: an object's keys sorted
    /// (a path's `.*` still selects them in document order).
    pub(super) fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Str(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                let mut sorted: Vec<&(Cow<'a, str>, Json<'a>)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            scalar => {
                scalar.scalar_text(out);
            }
        }
    }
}

/// A JSON string literal for `s`, escaped as Jackson escapes it.
pub(super) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number's text as Jackson reads it for Flink and Java prints it: an
/// integer as written (`-0` is `0`); anything with a fraction or exponent is a
/// BigDecimal, so `1.0` stays `1.0`, `2.50` stays `2.50` and `1e2` is `1E+2`.
fn java_number(text: &str, out: &mut String) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if fraction.is_empty() && !mantissa.contains('.') && unsigned.len() == mantissa.len() {
        // An integer.
        if negative && whole.bytes().any(|b| b != b'0') {
            out.push('-');
        }
        out.push_str(whole);
        return;
    }
    // BigDecimal: the digits without leading zeros, and a scale.
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let scale = i64::try_from(fraction.len()).unwrap_or(0) - exponent;
    let adjusted = -scale + i64::try_from(digits.len()).unwrap_or(0) - 1;
    let zero = digits == "0";
    if negative && !zero {
        out.push('-');
    }
    if scale >= 0 && adjusted >= -6 {
        let scale = usize::try_from(scale).unwrap_or(0);
        if scale == 0 {
            out.push_str(digits);
        } else if digits.len() > scale {
            out.push_str(&digits[..digits.len() - scale]);
            out.push('.');
            out.push_str(&digits[digits.len() - scale..]);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "E{}{}", if adjusted >= 0 { "+" } else { "-" }, adjusted.unsigned_abs());
    }
}

/// A strict JSON reader over a document's bytes (RFC 8259: no comments, no
/// single quotes, no trailing commas). Every method returns None on malformed input.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

/// Past this nesting a document is refused rather than recursed into.
const MAX_DEPTH: usize = 1_000;

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader { text, pos: 0 }
    }

    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.text.as_bytes().get(self.pos) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.pos..].starts_with(word).then(|| self.pos += word.len())
    }

    /// The next value, built.
    fn value(&mut self) -> Option<Json<'a>> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Option<Json<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match self.peek()? {
            b'{' => {
                let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
                self.members(|reader, key| {
                    let value = reader.value_at(depth + 1)?;
                    // A repeated key keeps its first place and its last value, as in a LinkedHashMap.
                    match members.iter_mut().find(|(k, _)| *k == key) {
                        Some(member) => member.1 = value,
                        None => members.push((key, value)),
                    }
                    Some(())
                })?;
                Json::Object(members)
            }
            b'[' => {
                let mut items = Vec::new();
                self.elements(|reader, _| {
                    items.push(reader.value_at(depth + 1)?);
                    Some(())
                })?;
                Json::Array(items)
            }
            b'"' => Json::Str(self.string()?),
            b't' => self.literal("true").map(|_| Json::Bool(true))?,
            b'f' => self.literal("false").map(|_| Json::Bool(false))?,
            b'n' => self.literal("null").map(|_| Json::Null)?,
            _ => Json::Number(self.number()?),
        })
    }

    /// Reads past the next value, checking it, building nothing.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.members(|reader, _| reader.skip(depth + 1)),
            b'[' => self.elements(|reader, _| reader.skip(depth + 1)),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(|_| ()),
        }
    }

    /// An object's members: `each` reads the value after each key.
    fn members(&mut self, mut each: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.eat(b':')?;
            each(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array's elements: `each` reads element `i`.
    fn elements(&mut self, mut each: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        let mut i = 0;
        loop {
            each(self, i)?;
            i += 1;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string, borrowed unless it has escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut end = start;
        while let Some(&b) = bytes.get(end) {
            match b {
                b'"' => {
                    self.pos = end + 1;
                    return Some(Cow::Borrowed(&self.text[start..end]));
                }
                b'\\' => break,
                b if b < 0x20 => return None,
                _ => end += 1,
            }
        }
        // Escapes: build the text.
        let mut out = String::from(&self.text[start..end]);
        let mut chars = self.text[end..].char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = end + at + 1;
                    return Some(Cow::Owned(out));
                }
                '\\' => match chars.next()?.1 {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        fn unit(chars: &mut std::str::CharIndices) -> Option<u32> {
                            let hex: String = (0..4).map(|_| chars.next().map(|(_, c)| c)).collect::<Option<String>>()?;
                            u32::from_str_radix(&hex, 16).ok()
                        }
                        let first = unit(&mut chars)?;
                        let code = if (0xD800..0xDC00).contains(&first) {
                            // A surrogate pair: the low half must follow as \uXXXX.
                            if chars.next()?.1 != '\\' || chars.next()?.1 != 'u' {
                                return None;
                            }
                            let low = unit(&mut chars)?;
                            0x10000 + ((first - 0xD800) << 10) + low.checked_sub(0xDC00)?
                        } else {
                            first
                        };
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                },
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
        None
    }

    /// A number's text: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut at = start;
        let digits = |at: &mut usize| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        if bytes.get(at) == Some(&b'0') {
            at += 1;
            if bytes.get(at).is_some_and(u8::is_ascii_digit) {
                // Leading zeros are refused, as Jackson refuses them.
                return None;
            }
        } else if !digits(&mut at) {
            return None;
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return None;
            }
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if !digits(&mut at) {
                return None;
            }
        }
        self.pos = at;
        Some(&self.text[start..at])
    }

    /// Walks a path of members and non-negative indexes to its value, building
    /// only that value and checking (not building) the rest of the document.
    fn find(&mut self, steps: &[Step], mode: Mode, depth: usize) -> Option<Selected<'a>> {
        let Some((step, rest)) = steps.split_first() else {
            return self.value_at(depth).map(Selected::One);
        };
        let mut found: Option<Selected<'a>> = None;
        match (step, self.peek()?) {
            (Step::Member(name), b'{') => self.members(|reader, key| {
                // A repeated key: the last one counts, as in Jackson's tree.
                if key == name.as_str() {
                    found = Some(reader.find(rest, mode, depth + 1)?);
                    Some(())
                } else {
                    reader.skip(depth + 1)
                }
            })?,
            (Step::Element(n), b'[') => self.elements(|reader, i| {
                if i64::try_from(i).ok() == Some(*n) {
                    found = Some(reader.find(rest, mode, depth + 1)?);
                    Some(())
                } else {
                    reader.skip(depth + 1)
                }
            })?,
            _ => self.skip(depth)?,
        }
        Some(found.unwrap_or(match mode {
            Mode::Lax => Selected::Nothing,
            Mode::Strict => Selected::Error,
        }))
    }
}

/// Whether `text` is a JSON document, and its first value's kind if so.
pub(super) fn json_kind(text: &str) -> Option<JsonKind> {
    let mut reader = Reader::new(text);
    let kind = match reader.peek()? {
        b'{' => JsonKind::Object,
        b'[' => JsonKind::Array,
        _ => JsonKind::Scalar,
    };
    reader.skip(0).map(|_| kind)
}

/// What kind of value a JSON document is, for `IS JSON OBJECT` and the like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonKind {
    Object,
    Array,
    Scalar,
}

/// How a path treats a step that does not fit the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A missing member or element selects nothing (the default).
    Lax,
    /// A missing member or element is an error.
    Strict,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Member(String),
    /// `[n]`; negative counts from the end, as Jayway does.
    Element(i64),
    /// `[*]` or `.*`: every element or member value.
    Every,
}

/// A compiled SQL/JSON path.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JsonPath {
    pub(super) mode: Mode,
    steps: Vec<Step>,
}

/// What a path selects from a document.
#[derive(Debug, PartialEq)]
pub(super) enum Selected<'a> {
    /// A path without wildcards selected one value.
    One(Json<'a>),
    /// A path with a wildcard selected these values (possibly none): Jayway returns them as a list.
    Many(Vec<Json<'a>>),
    /// Nothing there (a missing member or element in lax mode).
    Nothing,
    /// The document is no JSON, or a strict path did not fit it.
    Error,
}

impl JsonPath {
    /// Parses `lax $.a.b`, `strict $['a'][0]`, `$.a[*]`; the error says what is wrong.
    pub(super) fn parse(text: &str) -> Result<JsonPath, String> {
        let trimmed = text.trim_start();
        let (mode, rest) = if let Some(rest) = strip_keyword(trimmed, "lax") {
            (Mode::Lax, rest)
        } else if let Some(rest) = strip_keyword(trimmed, "strict") {
            (Mode::Strict, rest)
        } else {
            (Mode::Lax, trimmed)
        };
        let rest = rest.trim();
        let Some(mut rest) = rest.strip_prefix('$') else {
            return Err(format!("the JSON path '{text}' must start with $ (after an optional lax or strict)"));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(".*") {
                steps.push(Step::Every);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = after[..end].trim();
                if name.is_empty() {
                    return Err(format!("the JSON path '{text}' has a '.' with no member name after it"));
                }
                steps.push(Step::Member(name.to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = closing_bracket(after).ok_or_else(|| format!("the JSON path '{text}' has a '[' with no ']'"))?;
                let inside = after[..end].trim();
                steps.push(if inside == "*" {
                    Step::Every
                } else if let Some(name) = quoted(inside) {
                    Step::Member(name)
                } else {
                    Step::Element(inside.parse().map_err(|_| format!("the JSON path '{text}' has '[{inside}]', which is no index, * or quoted name"))?)
                });
                rest = &after[end + 1..];
            } else {
                return Err(format!("the JSON path '{text}' cannot be read at '{rest}'"));
            }
        }
        Ok(JsonPath { mode, steps })
    }

    /// What the path selects from the document in `text`. A path of members
    /// and indexes from the start is walked as the text is read, building only
    /// the value it selects; any other reads the whole document first.
    pub(super) fn select<'a>(&self, text: &'a str) -> Selected<'a> {
        if self.steps.iter().all(|s| matches!(s, Step::Member(_) | Step::Element(0..))) {
            return Reader::new(text).find(&self.steps, self.mode, 0).unwrap_or(Selected::Error);
        }
        match Json::parse(text) {
            Some(doc) => self.select_in(&doc),
            None => Selected::Error,
        }
    }

    fn select_in<'a>(&self, doc: &Json<'a>) -> Selected<'a> {
        let mut current: Vec<&Json<'a>> = vec![doc];
        let mut definite = true;
        for step in &self.steps {
            let mut next = Vec::with_capacity(current.len());
            for value in current {
                match (step, value) {
                    (Step::Member(name), Json::Object(members)) => match members.iter().find(|(k, _)| k.as_ref() == name.as_str()) {
                        Some((_, v)) => next.push(v),
                        None if self.mode == Mode::Strict && definite => return Selected::Error,
                        None => {}
                    },
                    (Step::Element(n), Json::Array(items)) => {
                        let index = if *n < 0 { i64::try_from(items.len()).unwrap_or(i64::MAX) + n } else { *n };
                        match usize::try_from(index).ok().and_then(|i| items.get(i)) {
                            Some(v) => next.push(v),
                            None if self.mode == Mode::Strict && definite => return Selected::Error,
                            None => {}
                        }
                    }
                    (Step::Every, Json::Array(items)) => next.extend(items.iter()),
                    (Step::Every, Json::Object(members)) => next.extend(members.iter().map(|(_, v)| v)),
                    _ if self.mode == Mode::Strict && definite => return Selected::Error,
                    _ => {}
                }
            }
            if *step == Step::Every {
                definite = false;
            }
            current = next;
        }
        match (definite, current.as_slice()) {
            (false, _) => Selected::Many(current.into_iter().cloned().collect()),
            (true, [one]) => Selected::One((*one).clone()),
            (true, _) => Selected::Nothing,
        }
    }
}

fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// Where the `]` closing a `[` is, skipping any inside quotes.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn quoted(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    Some(inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(doc: &str, path: &str) -> String {
        let path = JsonPath::parse(path).expect("a path");
        let text = |v: &Json| {
            let mut out = String::new();
            v.write(&mut out);
            out
        };
        match path.select(doc) {
            Selected::One(v) => text(&v),
            Selected::Many(vs) => format!("many {}", vs.iter().map(text).collect::<Vec<_>>().join(" ")),
            Selected::Nothing => "nothing".into(),
            Selected::Error => "error".into(),
        }
    }

    #[test]
    fn paths_select_members_elements_and_lists() {
        let doc = r#"{"b": {"c": [10, 20, {"d": "x"}]}, "a": 1.0}"#;
        assert_eq!(select(doc, "$.a"), "1.0");
        assert_eq!(select(doc, "lax $.b.c[1]"), "20");
        assert_eq!(select(doc, "$['b']['c'][-1].d"), "\"x\"");
        assert_eq!(select(doc, "$.b"), r#"{"c":[10,20,{"d":"x"}]}"#, "compact");
        assert_eq!(select(r#"{"c": 1, "ba": {"q": 1, "b": 2}}"#, "$"), r#"{"ba":{"b":2,"q":1},"c":1}"#, "keys sorted, as Flink writes them");
        assert_eq!(select(r#"{"c": 1, "ba": 2}"#, "$.*"), "many 1 2", "selected in document order");
        assert_eq!(select(doc, "$.b.c[*]"), r#"many 10 20 {"d":"x"}"#);
        assert_eq!(select(doc, "$.*"), r#"many {"c":[10,20,{"d":"x"}]} 1.0"#);
        assert_eq!(select(doc, "$.missing"), "nothing");
        assert_eq!(select(doc, "strict $.missing"), "error");
        assert_eq!(select(doc, "strict $.b.c[7]"), "error");
        assert_eq!(select(doc, "$.a.b"), "nothing", "a member of a number");
        assert_eq!(select(r#"{"a": 1, "a": 2}"#, "$.a"), "2", "the last of a repeated key");
        assert_eq!(select(r#"{"a": 1, "b": [1,]}"#, "$.a"), "error", "malformed after the value found");
        assert_eq!(select(r#"{"a": "x\u00e9\ud83d\ude00"}"#, "$.a"), "\"xé😀\"", "escapes");
        assert_eq!(select(r#"{"a": 1} trailing"#, "$.a"), "1", "what follows the document is ignored, as by Jackson");
    }

    #[test]
    fn numbers_print_as_jackson_reads_them() {
        let java = |text: &str| {
            let mut out = String::new();
            java_number(text, &mut out);
            out
        };
        // Flink 2.3's answers, and Java's BigDecimal.toString.
        assert_eq!(java("1e2"), "1E+2");
        assert_eq!(java("1.0"), "1.0");
        assert_eq!(java("2.50"), "2.50");
        assert_eq!(java("-0.5"), "-0.5");
        assert_eq!(java("12345678901234"), "12345678901234");
        assert_eq!(java("-0"), "0");
        assert_eq!(java("0.00001"), "0.00001");
        assert_eq!(java("0.0000001"), "1E-7");
        assert_eq!(java("1.5e-7"), "1.5E-7");
        assert_eq!(java("12.5E1"), "125");
        assert_eq!(java("-1.25e5"), "-1.25E+5");
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        assert!(JsonPath::parse("a.b").unwrap_err().contains("must start with $"));
        assert!(JsonPath::parse("$.a[").unwrap_err().contains("no ']'"));
        assert!(JsonPath::parse("$.a[x]").unwrap_err().contains("no index"));
        assert!(JsonPath::parse("$..").unwrap_err().contains("no member name"));
    }

    #[test]
    fn nesting_past_the_limit_is_refused_not_recursed_into() {
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(json_kind(&deep(MAX_DEPTH)), Some(JsonKind::Array));
        assert_eq!(json_kind(&deep(MAX_DEPTH + 2)), None);
        // Deep enough to overflow the stack if it were recursed into.
        assert_eq!(json_kind(&deep(1_000_000)), None);
        let path = JsonPath::parse("$[0]").expect("a path");
        assert_eq!(path.select(&deep(1_000_000)), Selected::Error);
    }

    #[test]
    fn json_kinds_need_a_whole_value() {
        assert_eq!(json_kind(" {\"a\": [1, {}]} "), Some(JsonKind::Object));
        assert_eq!(json_kind("[1]"), Some(JsonKind::Array));
        assert_eq!(json_kind("\"s\""), Some(JsonKind::Scalar));
        for bad in ["", "abc", "{\"a\" 1}", "[1,]", "{'a': 1}", "01", "1.", "\"\\x\""] {
            assert_eq!(json_kind(bad), None, "{bad}");
        }
    }
}
