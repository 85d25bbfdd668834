//! How typed (or piped) lines split into statements and backslash commands, as
//! psql splits them: a statement ends at a `;` outside quotes and comments, a
//! backslash outside them starts a command that runs to the end of the line
//! (so `SELECT 1 \g` and a `\p` on a continuation line work), and text not yet
//! ended stays in the query buffer across lines. Variables set with `\set`
//! are substituted as psql does: `:name` as is, `:'name'` as a string literal,
//! `:"name"` as a quoted identifier, never inside quotes or comments.

use std::collections::BTreeMap;

/// What a line held, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A statement ended by `;` (which it includes): the buffer's text up to there.
    Statement(String),
    /// A backslash command and its arguments, without the backslash (`pset format csv`).
    Command(String),
}

/// Where the scanner is: in plain SQL or inside something a `;` does not end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexical {
    Code,
    /// `'...'`
    String,
    /// `"..."`
    QuotedIdentifier,
    /// `` `...` ``
    Backticked,
    /// `/* ... */`, nested as PostgreSQL nests them.
    BlockComment(u32),
}

/// The text typed since the last statement was sent (psql's query buffer).
#[derive(Debug)]
pub struct QueryBuffer {
    text: String,
    state: Lexical,
}

impl Default for QueryBuffer {
    fn default() -> Self {
        QueryBuffer { text: String::new(), state: Lexical::Code }
    }
}

impl QueryBuffer {
    /// Scans one line (without its newline): returns the statements it ended
    /// and the backslash commands it held, in order; the rest stays buffered.
    pub fn push_line(&mut self, line: &str, variables: &BTreeMap<String, String>) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match self.state {
                Lexical::Code => match c {
                    '\'' => self.state = Lexical::String,
                    '"' => self.state = Lexical::QuotedIdentifier,
                    '`' => self.state = Lexical::Backticked,
                    '/' if next == Some('*') => {
                        self.state = Lexical::BlockComment(1);
                        self.text.push_str("/*");
                        i += 2;
                        continue;
                    }
                    '-' if next == Some('-') => {
                        // A line comment: the rest of the line, backslashes and all.
                        self.text.extend(&chars[i..]);
                        break;
                    }
                    ';' => {
                        self.text.push(';');
                        let statement = std::mem::take(&mut self.text);
                        // Sent from its first word, so an error's LINE counts from the statement, as psql's does.
                        if !is_blank(statement.trim_end_matches(';')) {
                            pieces.push(Piece::Statement(statement.trim_start().to_string()));
                        }
                        i += 1;
                        continue;
                    }
                    '\\' => {
                        let command: String = chars[i + 1..].iter().collect();
                        pieces.push(Piece::Command(command.trim().to_string()));
                        // Text typed before the command on the same line stays in the buffer.
                        if is_blank(&self.text) {
                            self.text.clear();
                        }
                        return pieces;
                    }
                    ':' if next != Some(':') && (i == 0 || chars[i - 1] != ':') => {
                        if let Some((value, used)) = substitute(&chars[i + 1..], variables) {
                            self.text.push_str(&value);
                            i += 1 + used;
                            continue;
                        }
                    }
                    _ => {}
                },
                Lexical::String if c == '\'' => self.state = Lexical::Code,
                Lexical::QuotedIdentifier if c == '"' => self.state = Lexical::Code,
                Lexical::Backticked if c == '`' => self.state = Lexical::Code,
                Lexical::BlockComment(depth) if c == '*' && next == Some('/') => {
                    self.state = if depth == 1 { Lexical::Code } else { Lexical::BlockComment(depth - 1) };
                    self.text.push_str("*/");
                    i += 2;
                    continue;
                }
                Lexical::BlockComment(depth) if c == '/' && next == Some('*') => {
                    self.state = Lexical::BlockComment(depth + 1);
                    self.text.push_str("/*");
                    i += 2;
                    continue;
                }
                _ => {}
            }
            self.text.push(c);
            i += 1;
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        pieces
    }

    /// True when nothing but blanks is buffered.
    pub fn is_empty(&self) -> bool {
        is_blank(&self.text)
    }

    /// The buffered text (`\p`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Takes the buffered text out (from its first word), leaving the buffer empty (`\g`, `\r`).
    pub fn take(&mut self) -> String {
        self.state = Lexical::Code;
        std::mem::take(&mut self.text).trim_start().to_string()
    }

    /// Whether a statement is half typed, and if so inside what, for the prompt:
    /// psql's `=`, `-`, `'`, `"` and `*`.
    pub fn prompt_mark(&self) -> char {
        match self.state {
            _ if self.text.is_empty() => '=',
            Lexical::Code => '-',
            Lexical::String => '\'',
            Lexical::QuotedIdentifier | Lexical::Backticked => '"',
            Lexical::BlockComment(_) => '*',
        }
    }
}

fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// A variable reference after a `:`: its substituted text and how many chars it used.
fn substitute(rest: &[char], variables: &BTreeMap<String, String>) -> Option<(String, usize)> {
    let quote = match rest.first() {
        Some('\'') => Some('\''),
        Some('"') => Some('"'),
        _ => None,
    };
    let start = usize::from(quote.is_some());
    let name: String = rest[start..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
    if name.is_empty() {
        return None;
    }
    let value = variables.get(&name)?;
    match quote {
        None => Some((value.clone(), name.chars().count())),
        Some(q) if rest.get(start + name.chars().count()) == Some(&q) => {
            let doubled = format!("{q}{q}");
            Some((format!("{q}{}{q}", value.replace(q, &doubled)), name.chars().count() + 2))
        }
        Some(_) => None,
    }
}

/// Splits a backslash command's arguments as psql does: by blanks, with
/// `'single quoted'` words (`''` for a quote) and `:name` variables.
pub fn arguments(text: &str, variables: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '\'' {
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            word.push('\'');
                            continue;
                        }
                        break;
                    }
                    word.push(c);
                }
            } else if c == ':' {
                let rest: String = chars.clone().collect();
                let rest: Vec<char> = rest.chars().collect();
                match substitute(&rest, variables) {
                    Some((value, used)) => {
                        word.push_str(&value);
                        for _ in 0..used {
                            chars.next();
                        }
                    }
                    None => word.push(':'),
                }
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(lines: &[&str]) -> (Vec<Piece>, String) {
        let mut buffer = QueryBuffer::default();
        let variables = BTreeMap::from([("n".to_string(), "42".to_string()), ("who".to_string(), "O'Hara".to_string())]);
        let mut pieces = Vec::new();
        for line in lines {
            pieces.extend(buffer.push_line(line, &variables));
        }
        (pieces, buffer.text().to_string())
    }

    fn statement(text: &str) -> Piece {
        Piece::Statement(text.to_string())
    }

    fn command(text: &str) -> Piece {
        Piece::Command(text.to_string())
    }

    #[test]
    fn statements_end_at_semicolons_outside_quotes_and_comments() {
        assert_eq!(scan(&["SELECT 1; SELECT 2;"]).0, vec![statement("SELECT 1;"), statement("SELECT 2;")]);
        assert_eq!(scan(&["SELECT 'a;b', \"c;d\", `e;f` -- g;", "FROM t;"]).0, vec![statement("SELECT 'a;b', \"c;d\", `e;f` -- g;\nFROM t;")]);
        assert_eq!(scan(&["SELECT /* a; /* b; */ c; */ 1;"]).0, vec![statement("SELECT /* a; /* b; */ c; */ 1;")]);
        let (pieces, rest) = scan(&["SELECT 'it''s", "still; open"]);
        assert!(pieces.is_empty());
        assert_eq!(rest, "SELECT 'it''s\nstill; open\n");
        assert_eq!(scan(&[";", "  ;"]).0, vec![]);
    }

    #[test]
    fn backslash_commands_anywhere_outside_quotes() {
        assert_eq!(scan(&["SELECT 1 \\g"]), (vec![command("g")], "SELECT 1 ".to_string()));
        assert_eq!(scan(&["SELECT 1", "\\p"]), (vec![command("p")], "SELECT 1\n".to_string()));
        assert_eq!(scan(&["  \\pset format csv  "]), (vec![command("pset format csv")], String::new()));
        assert_eq!(scan(&["SELECT 2; \\x"]).0, vec![statement("SELECT 2;"), command("x")]);
        assert_eq!(scan(&["SELECT '\\x' -- \\y", "FROM t;"]).0, vec![statement("SELECT '\\x' -- \\y\nFROM t;")]);
    }

    #[test]
    fn variables_are_substituted_outside_quotes() {
        assert_eq!(
            scan(&["SELECT :n, :'who', :\"n\", ':n', :missing, x::BIGINT;"]).0,
            vec![statement("SELECT 42, 'O''Hara', \"42\", ':n', :missing, x::BIGINT;")]
        );
    }

    #[test]
    fn arguments_split_by_blanks_with_quotes_and_variables() {
        let variables = BTreeMap::from([("n".to_string(), "42".to_string())]);
        assert_eq!(arguments("echo  'a b' c''d 'it''s' :n x:n :m", &variables), vec!["echo", "a b", "cd", "it's", "42", "x42", ":m"]);
        assert!(arguments("   ", &variables).is_empty());
    }
}
