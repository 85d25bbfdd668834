//! Secrets in statements, hidden wherever a statement is shown: a table's
//! `WITH` options carry passwords, tokens and keys (`'password' = '...'`,
//! `'properties.sasl.jaas.config' = '...'`, `'url' = 'redis://:pw@host'`), and
//! `SHOW CREATE`, the web console and the logs show statements to people who
//! may run the pipeline but should not learn its credentials. The catalog keeps
//! the statement as written: a restarted server needs the real values.

/// What a hidden value is shown as.
pub const MASK: &str = "******";

/// Words in an option's key that mark its value as a secret.
const SECRET_KEY_WORDS: [&str; 8] = ["password", "passwd", "secret", "token", "jaas", "credential", "private-key", "access-key"];

/// Whether the value of option `key` is a secret (matched by words, case-insensitively,
/// so connectors' own spellings such as `properties.sasl.password` are covered).
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_WORDS.iter().any(|word| key.contains(word))
}

/// `value` of option `key` as it may be shown: [`MASK`] for a secret, and
/// otherwise the value with any password in a URL (`scheme://user:PASSWORD@host`) hidden.
pub fn mask_option(key: &str, value: &str) -> String {
    if is_secret_option(key) {
        MASK.to_string()
    } else {
        mask_url_passwords(value)
    }
}

/// `text` with the password of every URL in it (`scheme://user:PASSWORD@host`) hidden.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        // The authority ends at the path, the query, a quote or white space.
        let authority_end = rest.find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace()).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    out
}

/// A single-quoted string literal of a statement: its span in bytes (quotes
/// included) and its value (`''` read as one quote).
struct Literal {
    start: usize,
    end: usize,
    value: String,
}

/// The string literals of `sql`, skipping comments and double-quoted identifiers.
fn literals(sql: &str) -> Vec<Literal> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = sql[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 2),
            b'"' | b'`' => {
                let quote = bytes[i];
                i = sql[i + 1..].find(quote as char).map_or(bytes.len(), |n| i + 1 + n + 1);
            }
            b'\'' => {
                let start = i;
                let mut value = String::new();
                i += 1;
                loop {
                    match sql[i..].find('\'') {
                        None => {
                            // An unterminated literal: the rest is its value.
                            value.push_str(&sql[i..]);
                            i = bytes.len();
                            break;
                        }
                        Some(n) if bytes.get(i + n + 1) == Some(&b'\'') => {
                            value.push_str(&sql[i..i + n + 1]);
                            i += n + 2;
                        }
                        Some(n) => {
                            value.push_str(&sql[i..i + n]);
                            i += n + 1;
                            break;
                        }
                    }
                }
                found.push(Literal { start, end: i, value });
            }
            _ => i += 1,
        }
    }
    found
}

/// `sql` as it may be shown: the value of every secret option (`'KEY' = 'VALUE'`
/// where [`is_secret_option`] holds for KEY) is [`MASK`], and passwords in URLs
/// anywhere in a literal are hidden. Everything else is kept as written.
pub fn mask_statement(sql: &str) -> String {
    let literals = literals(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (i, literal) in literals.iter().enumerate() {
        let follows_secret_key = i > 0 && {
            let key = &literals[i - 1];
            sql[key.end..literal.start].trim() == "=" && is_secret_option(&key.value)
        };
        let shown = if follows_secret_key { MASK.to_string() } else { mask_url_passwords(&literal.value) };
        if shown != literal.value {
            out.push_str(&sql[copied..literal.start]);
            out.push('\'');
            out.push_str(&shown.replace('\'', "''"));
            out.push('\'');
            copied = literal.end;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_options_are_hidden_and_the_rest_kept_as_written() {
        let sql = "CREATE TABLE t (a INT) WITH ('connector' = 'kafka', 'properties.sasl.password'='p@ss''word',\n  'properties.sasl.jaas.config' = 'org.Plain username=\"u\" password=\"x\";', 'topic' = 'password')";
        let shown = mask_statement(sql);
        assert_eq!(
            shown,
            "CREATE TABLE t (a INT) WITH ('connector' = 'kafka', 'properties.sasl.password'='******',\n  'properties.sasl.jaas.config' = '******', 'topic' = 'password')"
        );
    }

    #[test]
    fn passwords_in_urls_are_hidden_wherever_they_are() {
        assert_eq!(mask_url_passwords("redis://:hunter2@127.0.0.1:6379/0"), "redis://:******@127.0.0.1:6379/0");
        assert_eq!(mask_url_passwords("http://user:pw@ch:8123/?x=1 and s3://bucket/p"), "http://user:******@ch:8123/?x=1 and s3://bucket/p");
        assert_eq!(mask_url_passwords("http://user@host:8123/"), "http://user@host:8123/");
        assert_eq!(mask_statement("SELECT 'redis://u:pw@h' -- 'password' = 'x'"), "SELECT 'redis://u:******@h' -- 'password' = 'x'");
    }

    #[test]
    fn option_keys_name_secrets_by_their_words() {
        for key in ["password", "properties.sasl.password", "s3.secret-access-key", "auth.token", "PASSWORD", "properties.ssl.key.password"] {
            assert!(is_secret_option(key), "{key}");
        }
        for key in ["connector", "topic", "properties.bootstrap.servers", "format", "key.format", "url"] {
            assert!(!is_secret_option(key), "{key}");
        }
        assert_eq!(mask_option("url", "clickhouse://default:pw@h:9000"), "clickhouse://default:******@h:9000");
        assert_eq!(mask_option("password", "pw"), MASK);
    }
}
