//! The client's help: `\?` lists the backslash commands, `\h` the SQL
//! statements Eddy understands and `\h STATEMENT` one statement's syntax, as
//! psql's `\h` does for PostgreSQL's. docs/SQL.md says the rest.

/// `\?`.
pub const COMMANDS: &str = r#"General
  \q                 quit
  \?                 this help
  \h [STATEMENT]     SQL help: the statements, or one statement's syntax
  \conninfo          the server this session talks to
Query buffer
  \g                 send the query buffer (or, when empty, the last statement) again
  \p                 print the query buffer (or, when empty, the last statement)
  \r                 reset (empty) the query buffer
  \e                 edit the query buffer (or the last statement) in $EDITOR; it runs if it ends with ';'
  \watch [SEC]       run the last statement again every SEC seconds (default 2) until Ctrl-C
  \i FILE            run the statements in FILE
Input/Output
  \o [FILE]          send results to FILE, or back to standard output
  \echo [TEXT]       print TEXT
Variables
  \set [NAME [VALUE]] set a variable (used as :NAME, :'NAME', :"NAME" in statements), or list them
  \unset NAME        remove a variable
Informational
  \d                 list tables and views
  \d NAME            describe a table or view
  \dt                list tables
  \dv                list views (plain and materialized)
  \dp                list pipelines: rows, rate, lag, watermark, last checkpoint, state size
Formatting
  \x [on|off]        expanded display
  \pset format aligned|csv
  \pset pager on|off page results taller than the terminal ($PAGER, else less -SFX)
  \timing [on|off]   show how long each statement takes
Streaming
  \subscribe NAME    print a materialized view's rows, then its changes as they happen (or the rows an
                     INSERT INTO pipeline writes, by its id or table name), until Ctrl-C
Statements end with ';' and may span lines; backslash commands work on any line. Tab completes
keywords, tables, views and columns. Ctrl-C cancels the statement being typed or run, or the
\watch or \subscribe loop.
"#;

/// One statement's help: its name (what `\h` matches), what it does, its syntax.
struct Topic {
    name: &'static str,
    what: &'static str,
    syntax: &'static str,
}

const TOPICS: &[Topic] = &[
    Topic {
        name: "CREATE TABLE",
        what: "declare a source or sink table over a connector; its options are checked at once",
        syntax: "CREATE TABLE [IF NOT EXISTS] name (\n    column type [NOT NULL] [, ...]\n    [, column AS expression]\n    [, WATERMARK FOR column AS column - INTERVAL 'n' unit]\n    [, PRIMARY KEY (column [, ...]) NOT ENFORCED]\n) WITH ('connector' = 'kafka' | 'filesystem' | 'redis' | 'clickhouse' | 'datagen' | 'nexmark' | ..., 'option' = 'value' [, ...])\n\ntypes: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p, s), STRING, VARCHAR(n), BYTES, DATE, TIME, TIMESTAMP(3), TIMESTAMP_LTZ(3)",
    },
    Topic { name: "CREATE VIEW", what: "name a query; it is inlined where it is used", syntax: "CREATE [TEMPORARY] VIEW name AS query" },
    Topic {
        name: "CREATE MATERIALIZED VIEW",
        what: "server only: start a pipeline whose result the server keeps up to date and answers SELECTs on",
        syntax: "CREATE MATERIALIZED VIEW name AS query",
    },
    Topic {
        name: "INSERT INTO",
        what: "start a pipeline that writes the query's rows into a sink table",
        syntax: "INSERT INTO table query",
    },
    Topic {
        name: "SELECT",
        what: "run a query over bounded tables or materialized views and print its rows",
        syntax: "SELECT expression [, ...]\n    [FROM table | view | TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size)) | TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size))\n          | TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size)) | TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), gap)) [JOIN ...]]\n    [WHERE condition]\n    [GROUP BY expression [, ...] [HAVING condition]]\n    [ORDER BY expression [ASC | DESC] [, ...]] [LIMIT n]",
    },
    Topic {
        name: "SET",
        what: "change a setting for the statements that follow",
        syntax: "SET 'key' = 'value'\n\nkeys: 'parallelism', 'execution.checkpointing.interval', ...",
    },
    Topic { name: "SHOW", what: "list tables, views or pipelines", syntax: "SHOW TABLES | VIEWS | PIPELINES" },
    Topic { name: "DESCRIBE", what: "a table's or view's columns with their SQL types", syntax: "DESCRIBE name" },
    Topic {
        name: "EXPLAIN",
        what: "the operator tree a statement would run, with tasks, watermarks and state, without running it",
        syntax: "EXPLAIN INSERT INTO ... | SELECT ... | CREATE MATERIALIZED VIEW ...",
    },
    Topic { name: "DROP", what: "remove a table or view (one a running pipeline uses is refused)", syntax: "DROP TABLE | VIEW | MATERIALIZED VIEW [IF EXISTS] name" },
    Topic {
        name: "STOP PIPELINE",
        what: "server only: stop a pipeline; WITH SAVEPOINT first takes a checkpoint to restart exactly from",
        syntax: "STOP PIPELINE id [WITH SAVEPOINT]",
    },
    Topic {
        name: "RESTART PIPELINE",
        what: "server only: start a stopped, finished or failed pipeline again from its last checkpoint",
        syntax: "RESTART PIPELINE id [WITH PARALLELISM n]",
    },
];

/// `\h` (every statement) or `\h STATEMENT` (the topics whose name starts with it).
pub fn statement_help(asked: &str) -> String {
    let asked = asked.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
    if asked.is_empty() {
        let mut text = String::from("Available help:\n");
        for topic in TOPICS {
            text.push_str(&format!("  {}\n", topic.name));
        }
        text.push_str("Type \\h STATEMENT for one of them (e.g. \\h CREATE TABLE); docs/SQL.md has the rest.\n");
        return text;
    }
    let found: Vec<&Topic> = TOPICS.iter().filter(|t| t.name.starts_with(&asked) || asked.starts_with(t.name)).collect();
    // `\h CREATE TABLE x` still finds CREATE TABLE: the longest topic the question starts with wins.
    let best = found.iter().filter(|t| asked.starts_with(t.name)).max_by_key(|t| t.name.len());
    let shown: Vec<&Topic> = match best {
        Some(topic) => vec![*topic],
        None => found,
    };
    if shown.is_empty() {
        let names: Vec<&str> = TOPICS.iter().map(|t| t.name).collect();
        return format!("No help available for \"{asked}\".\nTry \\h with no arguments to see available help: {}.\n", names.join(", "));
    }
    shown.iter().map(|t| format!("Command:     {}\nDescription: {}\nSyntax:\n{}\n\n", t.name, t.what, t.syntax)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_finds_statements_by_their_first_words() {
        assert!(statement_help("").lines().any(|l| l == "  CREATE MATERIALIZED VIEW"));
        let table = statement_help("create   table");
        assert!(table.starts_with("Command:     CREATE TABLE\n"), "{table}");
        assert_eq!(table.matches("Command:").count(), 1);
        // A prefix shows every statement it starts.
        let create = statement_help("CREATE");
        assert_eq!(create.matches("Command:").count(), 3, "{create}");
        // Extra words after a statement's name still find it.
        assert!(statement_help("select * from t").starts_with("Command:     SELECT\n"));
        assert!(statement_help("VACUUM").starts_with("No help available for \"VACUUM\"."));
    }
}
