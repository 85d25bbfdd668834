//! JSON documents and the SQL/JSON paths Flink's JSON functions take
//! (`lax $.a.b[0]`, `strict $['k'][*]`), as Flink evaluates them: Calcite reads
//! the path with Jayway JsonPath over Jackson's tree, so object keys keep their
//! order, numbers print as Java prints them, and a path with a wildcard selects
//! a list of values rather than one.

use std::fmt::Write;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON document, its objects' keys in document order (as Jackson keeps them).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64` or a number with a fraction or exponent: a Java double.
    Double(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The document in `text`, or None when it is no JSON.
    pub(super) fn parse(text: &str) -> Option<Json> {
        serde_json::from_str(text).ok()
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
            Json::Int(i) => write!(out, "{i}").ok()?,
            Json::Double(d) => java_double(*d, out),
            Json::Null | Json::Array(_) | Json::Object(_) => return None,
        }
        Some(())
    }

    /// Compact JSON text, as Jackson writes it.
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
                for (i, (key, value)) in members.iter().enumerate() {
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
    // serde_json escapes exactly what Jackson does: quotes, backslashes and control characters.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// `d` as Java's `Double.toString` prints it: `1.0`, `0.001`, `1.0E7`, `1.5E-7`.
pub(super) fn java_double(d: f64, out: &mut String) {
    if d.is_nan() {
        out.push_str("NaN");
        return;
    }
    if d.is_infinite() {
        out.push_str(if d > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let magnitude = d.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        // Rust prints the shortest digits that read back as `d`; Java adds ".0" to a whole number.
        let _ = write!(out, "{d}");
        if d.fract() == 0.0 {
            out.push_str(".0");
        }
        return;
    }
    // Scientific: the shortest digits, as `d.ddd` then `E` and the exponent.
    let text = format!("{d:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    out.push('E');
    out.push_str(exponent);
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
        Ok(Json::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
        Ok(i64::try_from(u).map(Json::Int).unwrap_or(Json::Double(u as f64)))
    }

    fn visit_f64<E>(self, d: f64) -> Result<Json, E> {
        Ok(Json::Double(d))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            // A repeated key keeps its first place and its last value, as in a LinkedHashMap.
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(member) => member.1 = value,
                None => members.push((key, value)),
            }
        }
        Ok(Json::Object(members))
    }
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
    One(&'a Json),
    /// A path with a wildcard selected these values (possibly none): Jayway returns them as a list.
    Many(Vec<&'a Json>),
    /// Nothing there (a missing member or element in lax mode).
    Nothing,
    /// A strict path did not fit the document.
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

    /// What the path selects from `doc`.
    pub(super) fn select<'a>(&self, doc: &'a Json) -> Selected<'a> {
        let mut current: Vec<&'a Json> = vec![doc];
        let mut definite = true;
        for step in &self.steps {
            let mut next = Vec::with_capacity(current.len());
            for value in current {
                match (step, value) {
                    (Step::Member(name), Json::Object(members)) => match members.iter().find(|(k, _)| k == name) {
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
            (false, _) => Selected::Many(current),
            (true, [one]) => Selected::One(one),
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
        let doc = Json::parse(doc).expect("a document");
        let path = JsonPath::parse(path).expect("a path");
        let text = |v: &Json| {
            let mut out = String::new();
            v.write(&mut out);
            out
        };
        match path.select(&doc) {
            Selected::One(v) => text(v),
            Selected::Many(vs) => format!("many {}", vs.iter().map(|v| text(v)).collect::<Vec<_>>().join(" ")),
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
        assert_eq!(select(doc, "$.b"), r#"{"c":[10,20,{"d":"x"}]}"#, "keys in document order, compact");
        assert_eq!(select(doc, "$.b.c[*]"), r#"many 10 20 {"d":"x"}"#);
        assert_eq!(select(doc, "$.*"), r#"many {"c":[10,20,{"d":"x"}]} 1.0"#);
        assert_eq!(select(doc, "$.missing"), "nothing");
        assert_eq!(select(doc, "strict $.missing"), "error");
        assert_eq!(select(doc, "strict $.b.c[7]"), "error");
        assert_eq!(select(doc, "$.a.b"), "nothing", "a member of a number");
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        assert!(JsonPath::parse("a.b").unwrap_err().contains("must start with $"));
        assert!(JsonPath::parse("$.a[").unwrap_err().contains("no ']'"));
        assert!(JsonPath::parse("$.a[x]").unwrap_err().contains("no index"));
        assert!(JsonPath::parse("$..").unwrap_err().contains("no member name"));
    }

    #[test]
    fn doubles_print_as_java_prints_them() {
        let java = |d: f64| {
            let mut out = String::new();
            java_double(d, &mut out);
            out
        };
        assert_eq!(java(1.0), "1.0");
        assert_eq!(java(1.5), "1.5");
        assert_eq!(java(100.0), "100.0");
        assert_eq!(java(0.001), "0.001");
        assert_eq!(java(1e7), "1.0E7");
        assert_eq!(java(1.5e-7), "1.5E-7");
        assert_eq!(java(-2.5e10), "-2.5E10");
        assert_eq!(java(0.0), "0.0");
    }
}
