//! End to end: the web console `eddy server --http` serves (issue 20), driven in
//! a real headless Chromium over WebDriver (chromedriver, through fantoccini)
//! against a real server running real pipelines. What the pages show is checked
//! against the server's own figures: over gRPC (`GetPipeline`) and its JSON API,
//! exactly for a finished or stopped pipeline, and between a reading taken before
//! and one taken after for a running one; query results against values computed
//! here.
//!
//! Needs Chromium and chromedriver: `scripts/chromium/setup` installs Debian's
//! (scripts/test runs it); `EDDY_CHROMIUM` and `EDDY_CHROMEDRIVER` name others.
//! Screenshots of each page go to `target/tmp/console-screenshots/` (or `EDDY_SCREENSHOT_DIR`).
// Tests may unwrap: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, Server};
use eddy_proto::PipelineRef;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};

const TOKEN: &str = "secret";
/// How long anything the test waits for may take (a deadline against hangs; things get there much sooner).
const PATIENCE: Duration = Duration::from_secs(60);
/// The console's files, as the server embeds them.
const CONSOLE_FILES: [(&str, &str, &str); 3] =
    [("/", "index.html", "text/html"), ("/console.js", "console.js", "javascript"), ("/console.css", "console.css", "text/css")];

/// Chromium and chromedriver: `$EDDY_CHROMIUM` and `$EDDY_CHROMEDRIVER`, or Debian's.
/// Missing ones fail the test (scripts/test installs them), never skip it.
fn browser_paths() -> (PathBuf, PathBuf) {
    let path = |var: &str, default: &str| std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    let chromium = path("EDDY_CHROMIUM", "/usr/bin/chromium");
    let driver = path("EDDY_CHROMEDRIVER", "/usr/bin/chromedriver");
    for (what, var, at) in [("Chromium", "EDDY_CHROMIUM", &chromium), ("chromedriver", "EDDY_CHROMEDRIVER", &driver)] {
        assert!(
            at.is_file(),
            "{what} is not at {}: run scripts/chromium/setup to install Chromium and chromedriver (scripts/test does), or set {var}",
            at.display()
        );
    }
    (chromium, driver)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free port (killed when dropped), and its URL.
fn start_chromedriver(path: &Path) -> (Running, String) {
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run scripts/chromium/setup", path.display()));
    let mut driver = Running(child);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(driver.0.try_wait().unwrap().is_none(), "chromedriver exited at once; run scripts/chromium/setup");
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

/// The console's `HOST:PORT`, from the server's first line.
fn console_address(banner: &str) -> String {
    ["console at http://", "metrics at http://"]
        .iter()
        .find_map(|marker| banner.split(marker).nth(1))
        .map(|rest| rest.split(['/', ',', ')', ' ']).next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no HTTP address in the server's first line: {banner:?}"))
}

/// An HTTP response: status, headers (lower-cased names), body.
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request to `address`, with `Authorization: Bearer token` when given.
fn http(address: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no end of headers: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers: BTreeMap<String, String> =
        head.lines().skip(1).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

/// A chunked body's bytes.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).split(';').next().unwrap().trim(), 16).expect("chunk size");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}

/// `method path` on the console's JSON API with the right token; it must succeed.
fn api(address: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let response = http(address, method, path, Some(TOKEN), body);
    assert!((200..300).contains(&response.status), "{method} {path}: {} {}", response.status, String::from_utf8_lossy(&response.body));
    response.json()
}

async fn get_pipeline(grpc: &mut eddy::client::Client, id: &str) -> eddy_proto::Pipeline {
    grpc.get_pipeline(PipelineRef { id: id.into() }).await.unwrap_or_else(|e| panic!("GetPipeline {id}: {e}")).into_inner()
}

/// Polls GetPipeline until `ready` holds.
async fn wait_pipeline(grpc: &mut eddy::client::Client, id: &str, what: &str, ready: impl Fn(&eddy_proto::Pipeline) -> bool) -> eddy_proto::Pipeline {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pipeline = get_pipeline(grpc, id).await;
        if ready(&pipeline) {
            return pipeline;
        }
        assert!(Instant::now() < deadline, "pipeline {id} never got {what}: {pipeline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `script` (a function body; `arguments[0]`... are `args`) in the page.
async fn js(browser: &Client, script: &str, args: Vec<Value>) -> Value {
    browser.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Runs `script` until it returns something but null or false (within PATIENCE), and returns that.
async fn wait_js(browser: &Client, what: &str, script: &str, args: Vec<Value>) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = js(browser, script, args.clone()).await;
        if !value.is_null() && value != Value::Bool(false) {
            return value;
        }
        if Instant::now() > deadline {
            let page = js(
                browser,
                "return location.hash + '\\n' + document.getElementById('banner').innerText + '\\n' + document.getElementById('app').innerText",
                vec![],
            )
            .await;
            panic!("never saw {what}; the page:\n{}", page.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(browser: &Client, css: &str) {
    let element = browser.wait().at_most(PATIENCE).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
    element.click().await.unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    let element = browser.wait().at_most(PATIENCE).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
    element.clear().await.unwrap();
    element.send_keys(text).await.unwrap();
}

/// The console showed no error banner since the page was loaded (it counts them on `<body>`).
async fn assert_no_errors(browser: &Client, when: &str) {
    let errors = js(browser, "return [document.body.dataset.errors || '0', document.getElementById('banner').innerText]", vec![]).await;
    assert_eq!(errors[0], "0", "{when}: the console showed an error: {}", errors[1]);
}

/// Waits until the page completed two more refreshes (it counts them on
/// `<body>`): the second one started after this was called, so what the page
/// shows then was read from the server after anything done before the call.
async fn two_more_polls(browser: &Client) {
    let polls = js(browser, "return Number(document.body.dataset.polls || 0)", vec![]).await.as_u64().unwrap();
    wait_js(browser, "two more refreshes", &format!("return Number(document.body.dataset.polls || 0) >= {}", polls + 2), vec![]).await;
}

/// Saves a screenshot of the page as `name`.png under `dir`.
async fn screenshot(browser: &Client, dir: &Path, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "the {name} screenshot is no PNG ({} bytes)", png.len());
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{} is empty", path.display());
}

/// "12,345" (or "12,345 rows/s") as 12345.
fn number(text: &str) -> f64 {
    let digits: String = text.split_whitespace().next().unwrap_or_default().replace(',', "");
    digits.parse().unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// One pipeline's row on the pipelines page: each cell's text by `data-field`, and which buttons are enabled.
const ROW: &str = "const r = document.querySelector('tr[data-pipeline=\"' + arguments[0] + '\"]');
    if (!r) return null;
    const o = {buttons: {}};
    for (const td of r.querySelectorAll('td[data-field]')) o[td.dataset.field] = td.innerText.trim();
    for (const b of r.querySelectorAll('button[data-action]')) o.buttons[b.dataset.action] = !b.disabled;
    return o;";

/// The pipeline page's figures by `data-field`.
const STATS: &str = "const o = {};
    for (const e of document.querySelectorAll('#pipeline-stats [data-field]')) o[e.dataset.field] = {text: e.innerText.trim(), value: e.dataset.value};
    o.sql = document.getElementById('pipeline-sql').textContent;
    o.badge = document.getElementById('pipeline-status') ? document.getElementById('pipeline-status').innerText.trim() : null;
    return o;";

/// The operator graph once every operator shows a rate (two polls apart): stages and operators as drawn.
const GRAPH: &str = "const svg = document.querySelector('svg#graph');
    const ops = [...svg.querySelectorAll('g.operator')];
    if (!ops.length || ops.some(o => o.dataset.rate === '')) return null;
    const stages = [...svg.querySelectorAll('g.stage')].map(g => ({
      id: Number(g.dataset.stage), x: Number(g.querySelector('rect.stage-box').getAttribute('x')),
      kind: g.dataset.kind, tasks: g.querySelector('text.stage-tasks').textContent,
      backpressure: g.querySelector('[data-field=backpressure]').textContent, share: g.dataset.backpressure,
      operators: [...g.querySelectorAll('g.operator')].map(o => o.dataset.operator)}));
    const sink = svg.querySelector('g.sink-info');
    return {stages, sink: sink && {rows_written: Number(sink.dataset.rowsWritten), rows_committed: Number(sink.dataset.rowsCommitted)}, edges: [...svg.querySelectorAll('path.edge')].map(e => [Number(e.dataset.from), Number(e.dataset.to)]),
      operators: ops.map(o => ({id: o.dataset.operator, name: o.querySelector('text.op-name').textContent,
        rate: Number(o.dataset.rate), rate_text: o.querySelector('[data-field=rate]').textContent,
        rows_in: Number(o.dataset.rowsIn), state_bytes: Number(o.dataset.stateBytes), state_keys: Number(o.dataset.stateKeys),
        keys_text: o.querySelector('[data-field=state_keys]').textContent}))};";

/// A result table: its header and rows of cell texts.
const TABLE: &str = "const t = document.querySelector(arguments[0]);
    if (!t) return null;
    return {columns: [...t.querySelectorAll('thead th')].map(th => th.innerText.trim()),
      rows: [...t.querySelectorAll('tbody tr')].map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim()))};";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_drives_the_servers_pipelines() {
    let (chromium, chromedriver) = browser_paths();
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--token", TOKEN, "--http", "127.0.0.1:0"]);
    let console = console_address(&server.banner);

    // The page: the three files the repository holds, served as they are, small,
    // and naming nothing to fetch from elsewhere.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/console");
    let mut page_bytes = 0;
    for (path, file, content_type) in CONSOLE_FILES {
        let response = http(&console, "GET", path, None, None);
        assert_eq!(response.status, 200, "GET {path}: {}", String::from_utf8_lossy(&response.body));
        assert!(response.headers.get("content-type").is_some_and(|t| t.contains(content_type)), "GET {path}: {:?}", response.headers);
        assert_eq!(response.body, std::fs::read(root.join(file)).unwrap(), "GET {path} is not src/http/console/{file}");
        let text = String::from_utf8_lossy(&response.body);
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url(http", "url(//", "fonts.googleapis"] {
            assert!(!text.contains(external), "{file} fetches from elsewhere ({external})");
        }
        page_bytes += response.body.len();
    }
    assert!(page_bytes < 500_000, "the console weighs {page_bytes} bytes");

    // The API (and /metrics) ask for the token; the page does not.
    for token in [None, Some("wrong")] {
        let refused = http(&console, "GET", "/api/pipelines", token, None);
        assert_eq!(refused.status, 401, "token {token:?}: {}", String::from_utf8_lossy(&refused.body));
        assert!(refused.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "token {token:?}: {}", refused.json());
        assert_eq!(http(&console, "GET", "/metrics", token, None).status, 401, "/metrics with token {token:?}");
    }
    assert_eq!(http(&console, "GET", "/metrics", Some(TOKEN), None).status, 200);

    // A pipeline that keeps running (a windowed count per key over a generator at
    // 200 rows/s, checkpointing twice a second) and one that finished (the squares
    // of 0..119, a bounded view to page through and query).
    let sql = |statements: &str| {
        let (code, _, stderr) = server.sql(&["--token", TOKEN, "-c", statements]);
        assert_eq!(code, 0, "`{statements}` failed: {stderr}");
    };
    sql("SET 'execution.checkpointing.interval' = '500 ms';
         CREATE TABLE ticks (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'datagen', 'rows-per-second' = '200');
         CREATE MATERIALIZED VIEW per_key AS SELECT window_start, id % 4 AS k, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE ticks, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, id % 4");
    sql("CREATE TABLE nums (k BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '0', 'fields.k.kind' = 'sequence', 'fields.k.start' = '0', 'fields.k.end' = '119');
         CREATE MATERIALIZED VIEW squares AS SELECT k, k * k AS sq FROM nums");
    let listed = api(&console, "GET", "/api/pipelines", None);
    let id_of = |name: &str| -> String {
        let found = listed["pipelines"].as_array().unwrap().iter().find(|p| p["name"] == name);
        found.unwrap_or_else(|| panic!("no pipeline {name} in {listed}"))["id"].as_str().unwrap().to_string()
    };
    let (live, done) = (id_of("per_key"), id_of("squares"));
    let mut grpc = eddy::client::connect(&server.address, Some(TOKEN)).await.unwrap();
    wait_pipeline(&mut grpc, &live, "a watermark and a checkpoint", |p| p.watermark_ms.is_some() && p.checkpoint_id > 0 && p.rows_in > 0).await;
    let finished = wait_pipeline(&mut grpc, &done, "its end", |p| p.status == "FINISHED").await;
    assert_eq!(finished.rows_in, 120);

    let (_driver, driver_url) = start_chromedriver(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", format!("--user-data-dir={}", profile.path().display()), "--window-size=1400,1000"],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver_url)
        .await
        .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}; run scripts/chromium/setup"));
    // Kept after the run (target/tmp is cargo's directory for tests' files), so a
    // failure can be looked at.
    let shots =
        std::env::var_os("EDDY_SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    // The browser is closed whatever happens, so a failure leaves no Chromium behind.
    let outcome = std::panic::AssertUnwindSafe(drive(&browser, &console, &mut grpc, &live, &done, &shots)).catch_unwind().await;
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    eprintln!("console_e2e: done in {:.1} s; screenshots in {}", started.elapsed().as_secs_f64(), shots.display());
}

async fn drive(browser: &Client, console: &str, grpc: &mut eddy::client::Client, live: &str, done: &str, shots: &Path) {
    // ---- The pipelines page asks for the token first; a wrong one is refused.
    browser.goto(&format!("http://{console}/#/pipelines")).await.unwrap();
    wait_js(browser, "the token prompt", "return !document.getElementById('token-overlay').hidden", vec![]).await;
    screenshot(browser, shots, "token").await;
    type_into(browser, "#token", "wrong").await;
    click(browser, "#token-submit").await;
    let refusal = wait_js(
        browser,
        "the wrong token refused",
        "const e = document.getElementById('token-error');
         return !document.getElementById('token-overlay').hidden && !e.hidden ? e.innerText : null",
        vec![],
    )
    .await;
    assert!(refusal.as_str().unwrap().contains("refused"), "{refusal}");
    assert_eq!(js(browser, "return document.querySelectorAll('tr[data-pipeline]').length", vec![]).await, 0, "rows shown without the token");
    type_into(browser, "#token", TOKEN).await;
    click(browser, "#token-submit").await;
    wait_js(browser, "the pipelines", ROW, vec![json!(done)]).await;
    assert_eq!(js(browser, "return sessionStorage.getItem('eddy.token')", vec![]).await, TOKEN);

    // The running pipeline's row: figures read between two GetPipeline readings.
    let before = get_pipeline(grpc, live).await;
    two_more_polls(browser).await;
    let row = js(browser, ROW, vec![json!(live)]).await;
    let after = get_pipeline(grpc, live).await;
    assert_eq!((row["name"].as_str().unwrap(), row["status"].as_str().unwrap(), row["id"].as_str().unwrap()), ("per_key", "RUNNING", live));
    let rows_in = number(row["rows_in"].as_str().unwrap()) as u64;
    assert!(before.rows_in < rows_in && rows_in <= after.rows_in, "rows in {rows_in}: GetPipeline read {} then {}", before.rows_in, after.rows_in);
    let rows_out = number(row["rows_out"].as_str().unwrap()) as u64;
    assert!(before.rows_out <= rows_out && rows_out <= after.rows_out, "rows out {rows_out}: GetPipeline read {} then {}", before.rows_out, after.rows_out);
    let checkpoint: u64 = row["checkpoint"].as_str().unwrap().trim_start_matches('#').split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{row}"));
    assert!((before.checkpoint_id..=after.checkpoint_id).contains(&checkpoint), "checkpoint {checkpoint}: {before:?} then {after:?}");
    for field in ["uptime", "rows_in_per_second", "watermark_lag"] {
        assert!(row[field].as_str().is_some_and(|t| !t.is_empty() && t != "\u{2014}"), "{field} not shown: {row}");
    }
    assert_eq!(row["buttons"], json!({"stop": true, "stop-savepoint": true, "restart": false}), "{row}");
    // The finished one: exactly GetPipeline's figures.
    let finished = get_pipeline(grpc, done).await;
    let row = js(browser, ROW, vec![json!(done)]).await;
    assert_eq!(row["status"], "FINISHED", "{row}");
    assert_eq!(number(row["rows_in"].as_str().unwrap()) as u64, finished.rows_in, "{row}");
    assert_eq!(number(row["rows_out"].as_str().unwrap()) as u64, finished.rows_out, "{row}");
    assert_eq!(row["uptime"], "\u{2014}", "a finished pipeline has no uptime: {row}");
    assert_eq!(row["buttons"], json!({"stop": false, "stop-savepoint": false, "restart": true}), "{row}");
    assert_no_errors(browser, "the pipelines page").await;
    screenshot(browser, shots, "pipelines").await;

    // ---- One pipeline: its SQL, graph, figures and charts.
    click(browser, &format!("tr[data-pipeline=\"{live}\"] td[data-field=\"id\"] a")).await;
    wait_js(browser, "the pipeline page", "return document.querySelector('svg#graph g.operator') !== null", vec![]).await;
    let shown = js(browser, STATS, vec![]).await;
    assert_eq!(shown["sql"], before.sql.as_str(), "the pipeline's SQL");
    assert_eq!(shown["parallelism"]["text"], before.parallelism.to_string());
    let before_api = api(console, "GET", &format!("/api/pipelines/{live}"), None);
    two_more_polls(browser).await;
    let graph = wait_js(browser, "every operator's rate", GRAPH, vec![]).await;
    let after_api = api(console, "GET", &format!("/api/pipelines/{live}"), None);
    let api_ops = |answer: &Value| -> BTreeMap<String, Value> {
        let stages = answer["graph"]["stages"].as_array().unwrap_or_else(|| panic!("no graph: {answer}"));
        stages.iter().flat_map(|s| s["operators"].as_array().unwrap().iter()).map(|o| (o["id"].as_str().unwrap().to_string(), o.clone())).collect()
    };
    let (ops_before, ops_after) = (api_ops(&before_api), api_ops(&after_api));
    let drawn: BTreeSet<String> = graph["operators"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(drawn, ops_before.keys().cloned().collect::<BTreeSet<_>>(), "the graph's operators: {graph}");
    assert!(drawn.len() >= 3, "a source, the window aggregate and the view: {graph}");
    for op in graph["operators"].as_array().unwrap() {
        let id = op["id"].as_str().unwrap();
        let name = ops_before[id]["name"].as_str().unwrap();
        let prefix: String = name.chars().take(20).collect();
        assert!(op["name"].as_str().unwrap().contains(&prefix), "operator {id} is {name}, drawn as {op}");
        let rows_in = op["rows_in"].as_u64().unwrap();
        let (low, high) = (ops_before[id]["rows_in"].as_u64().unwrap(), ops_after[id]["rows_in"].as_u64().unwrap());
        assert!(low <= rows_in && rows_in <= high, "operator {id}: {rows_in} rows in, the API read {low} then {high}");
        assert_eq!(op["keys_text"].as_str().unwrap().replace(',', ""), format!("{} keys", op["state_keys"]), "{op}");
        let rate_text = number(op["rate_text"].as_str().unwrap());
        assert!((rate_text - op["rate"].as_f64().unwrap()).abs() <= 0.5 + op["rate"].as_f64().unwrap() * 0.01, "{op}");
    }
    // The source reads 200 rows/s: its first operator's rate, measured between two
    // polls, is about that (waited for: a loaded machine may stall one poll's worth).
    let source = graph["stages"].as_array().unwrap().iter().find(|s| s["kind"] == "source").unwrap_or_else(|| panic!("{graph}"));
    let first_op = source["operators"][0].as_str().unwrap();
    let script = "const o = document.querySelector('svg#graph g.operator[data-operator=\"' + arguments[0] + '\"]');
        return o && o.dataset.rate !== '' ? Number(o.dataset.rate) : null";
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rate = js(browser, script, vec![json!(first_op)]).await;
        if rate.as_f64().is_some_and(|r| (50.0..=800.0).contains(&r)) {
            break;
        }
        assert!(Instant::now() < deadline, "operator {first_op} shows {rate} rows/s, but its source generates 200 rows/s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stages left to right along their output links, one edge per link, back-pressure as a share.
    let x_of: BTreeMap<i64, f64> = graph["stages"].as_array().unwrap().iter().map(|s| (s["id"].as_i64().unwrap(), s["x"].as_f64().unwrap())).collect();
    let links: BTreeSet<(i64, i64)> =
        before_api["graph"]["stages"].as_array().unwrap().iter().filter_map(|s| s["output"].as_i64().map(|o| (s["id"].as_i64().unwrap(), o))).collect();
    assert!(!links.is_empty(), "{before_api}");
    let edges: BTreeSet<(i64, i64)> = graph["edges"].as_array().unwrap().iter().map(|e| (e[0].as_i64().unwrap(), e[1].as_i64().unwrap())).collect();
    assert_eq!(edges, links, "the graph's edges");
    for (from, to) in &links {
        assert!(x_of[from] < x_of[to], "stage {from} feeds {to} but is not left of it: {graph}");
    }
    for stage in graph["stages"].as_array().unwrap() {
        let share: f64 = stage["share"].as_str().unwrap().parse().unwrap_or_else(|_| panic!("{stage}"));
        assert!((0.0..=1.0).contains(&share), "{stage}");
        let text = stage["backpressure"].as_str().unwrap();
        assert!(text.starts_with("back-pressured ") && text.ends_with('%'), "{stage}");
    }
    let keyed = graph["stages"].as_array().unwrap().iter().find(|s| s["kind"] == "keyed").unwrap_or_else(|| panic!("{graph}"));
    let tasks = if before.parallelism == 1 { "1 task".to_string() } else { format!("{} tasks", before.parallelism) };
    assert_eq!(keyed["tasks"].as_str().unwrap(), tasks, "{keyed}");

    // Charts: one polyline each from the history; the throughput line has one point per sample.
    wait_js(
        browser,
        "the four charts' lines",
        "return ['throughput', 'watermark_lag', 'checkpoint_ms', 'late_rows'].every(k => document.querySelector('svg.chart[data-chart=\"' + k + '\"] polyline'))",
        vec![],
    )
    .await;
    let samples_before = api(console, "GET", &format!("/api/pipelines/{live}"), None)["history"].as_array().unwrap().len();
    let script = format!(
        "const l = document.querySelector('svg.chart[data-chart=\"throughput\"] polyline');
         const n = l.getAttribute('points').trim().split(/\\s+/).length;
         return n >= {samples_before} ? [n, Number(l.dataset.points), document.querySelectorAll('svg.chart[data-chart=\"throughput\"] text.tick').length] : null"
    );
    let points = wait_js(browser, "the throughput chart with the newest samples", &script, vec![]).await;
    let samples_after = api(console, "GET", &format!("/api/pipelines/{live}"), None)["history"].as_array().unwrap().len();
    let drawn_points = points[0].as_u64().unwrap() as usize;
    assert!(
        samples_before <= drawn_points && drawn_points <= samples_after,
        "{drawn_points} points; the history had {samples_before} then {samples_after} samples"
    );
    assert_eq!(points[1].as_u64().unwrap() as usize, drawn_points);
    assert!(points[2].as_u64().unwrap() >= 4, "axis labels: {points}");
    // The page's figures lie between two GetPipeline readings.
    let before = get_pipeline(grpc, live).await;
    two_more_polls(browser).await;
    let shown = js(browser, STATS, vec![]).await;
    let after = get_pipeline(grpc, live).await;
    let value = |field: &str| -> u64 { shown[field]["value"].as_str().unwrap().parse().unwrap_or_else(|_| panic!("{field}: {shown}")) };
    assert!(before.rows_in < value("rows_in") && value("rows_in") <= after.rows_in, "rows in {}: {} then {}", value("rows_in"), before.rows_in, after.rows_in);
    assert_eq!(number(shown["rows_in"]["text"].as_str().unwrap()) as u64, value("rows_in"));
    assert!((before.checkpoint_id..=after.checkpoint_id).contains(&value("checkpoint")), "{shown}");
    assert!((before.late_rows..=after.late_rows).contains(&value("late_rows")), "{shown}");
    assert_eq!((shown["status"]["text"].as_str().unwrap(), shown["badge"].as_str().unwrap()), ("RUNNING", "RUNNING"));
    assert_no_errors(browser, "the pipeline page").await;
    screenshot(browser, shots, "pipeline").await;

    // ---- Tables and views: a schema, a view's rows page by page, the SQL box.
    click(browser, "a[data-nav=\"relations\"]").await;
    click(browser, "a[data-relation=\"squares\"]").await;
    wait_js(
        browser,
        "the view's first page",
        "return document.querySelector('#page-info[data-offset=\"0\"]') && document.querySelector('table#schema')",
        vec![],
    )
    .await;
    let relations = api(console, "GET", "/api/relations", None);
    let squares = relations["relations"].as_array().unwrap().iter().find(|r| r["name"] == "squares").unwrap_or_else(|| panic!("{relations}")).clone();
    assert_eq!(squares["kind"], "materialized view");
    let schema = js(browser, TABLE, vec![json!("table#schema")]).await;
    let expected_schema: Vec<Value> = squares["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!([c["name"], c["type"], if c["nullable"].as_bool().unwrap() { "yes" } else { "no" }]))
        .collect();
    assert_eq!(schema["rows"], json!(expected_schema), "the schema shown");
    assert_eq!(schema["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect::<Vec<_>>(), ["k", "sq"]);
    let listed: BTreeMap<String, String> = js(browser, "return Object.fromEntries([...document.querySelectorAll('a[data-relation]')].map(a => [a.dataset.relation, a.querySelector('.badge').innerText.trim()]))", vec![])
        .await
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_lowercase()))
        .collect();
    for relation in relations["relations"].as_array().unwrap() {
        assert_eq!(listed.get(relation["name"].as_str().unwrap()), Some(&relation["kind"].as_str().unwrap().to_string()), "{listed:?}");
    }
    for name in ["ticks", "nums", "per_key", "squares"] {
        assert!(listed.contains_key(name), "{name} not listed: {listed:?}");
    }
    let mut seen = BTreeSet::new();
    let first_page = api(console, "GET", "/api/views/squares/rows?offset=0&limit=50", None);
    for (offset, count) in [(0, 50), (50, 50), (100, 20)] {
        if offset > 0 {
            click(browser, "button#next").await;
        }
        let script = format!("return document.querySelector('#page-info[data-offset=\"{offset}\"]') ? document.getElementById('page-info').innerText : null");
        let info = wait_js(browser, &format!("the page at {offset}"), &script, vec![]).await;
        assert_eq!(info.as_str().unwrap(), format!("Rows {}\u{2013}{} of 120", offset + 1, offset + count));
        let page = js(browser, TABLE, vec![json!("table#view-rows")]).await;
        assert_eq!(page["columns"], json!(["k", "sq"]));
        let rows = page["rows"].as_array().unwrap();
        assert_eq!(rows.len(), count, "{page}");
        if offset == 0 {
            assert_eq!(page["rows"], first_page["rows"], "the first page as the API serves it");
        }
        for row in rows {
            assert!(seen.insert((row[0].as_str().unwrap().parse::<i64>().unwrap(), row[1].as_str().unwrap().parse::<i64>().unwrap())), "{row} twice");
        }
        let buttons = js(browser, "return [document.getElementById('prev').disabled, document.getElementById('next').disabled]", vec![]).await;
        assert_eq!(buttons, json!([offset == 0, offset == 100]), "Prev/Next at {offset}");
    }
    assert_eq!(seen, (0..120).map(|k| (k, k * k)).collect::<BTreeSet<_>>(), "the view's rows over its three pages");
    click(browser, "button#prev").await;
    wait_js(browser, "Prev", "return document.querySelector('#page-info[data-offset=\"50\"]') !== null", vec![]).await;

    // A query's result table, against values computed here.
    type_into(browser, "textarea#sql", "SELECT k, sq FROM squares WHERE k % 10 = 3 ORDER BY k").await;
    click(browser, "button#run").await;
    let result = wait_js(browser, "the query's result", TABLE, vec![json!("table#result")]).await;
    let expected: Vec<Vec<String>> = (0..120i64).filter(|k| k % 10 == 3).map(|k| vec![k.to_string(), (k * k).to_string()]).collect();
    assert_eq!(result["columns"], json!(["k", "sq"]));
    assert_eq!(result["rows"], json!(expected));
    // A statement that fails: the server's message (and where) shown, not a silent nothing.
    let bad = "SELECT 1 AS one;\nSELECT k FROM squares WHERE";
    let refused = http(console, "POST", "/api/sql", Some(TOKEN), Some(&json!({ "sql": bad })));
    assert_eq!(refused.status, 400, "{}", String::from_utf8_lossy(&refused.body));
    let refused = refused.json();
    type_into(browser, "textarea#sql", bad).await;
    click(browser, "button#run").await;
    let shown = wait_js(
        browser,
        "the SQL error",
        "const e = document.getElementById('sql-error');
         return e.hidden ? null : [e.innerText, document.querySelectorAll('#sql-results .result').length, document.querySelector('table#result') !== null]",
        vec![],
    )
    .await;
    let message = shown[0].as_str().unwrap();
    assert!(message.contains(refused["error"].as_str().unwrap()), "shown {message:?}, the API said {refused}");
    if let Some(line) = refused["line"].as_u64() {
        assert!(message.to_lowercase().contains(&format!("line {line}")), "{message:?} vs {refused}");
    }
    assert_eq!(shown[1].as_u64().unwrap() as usize, refused["results"].as_array().map_or(0, Vec::len), "{refused}");
    assert_no_errors(browser, "the relations page").await;
    screenshot(browser, shots, "relations").await;

    // ---- Stop with savepoint from the pipelines page: exactly GetPipeline's figures after.
    click(browser, "a[data-nav=\"pipelines\"]").await;
    click(browser, &format!("tr[data-pipeline=\"{live}\"] button[data-action=\"stop-savepoint\"]")).await;
    let notice = wait_js(
        browser,
        "the savepoint notice",
        "const b = document.getElementById('banner'); return !b.hidden && b.className === 'notice' ? b.innerText : null",
        vec![],
    )
    .await;
    let notice = notice.as_str().unwrap();
    let savepoint: u64 = notice
        .split("savepoint ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.trim_end_matches('.').parse().ok())
        .unwrap_or_else(|| panic!("no savepoint id in the notice {notice:?}"));
    let script = format!("{{ const o = (() => {{ {ROW} }})(); return o && o.status === 'STOPPED' ? o : null; }}");
    let row = wait_js(browser, "the stopped pipeline", &script, vec![json!(live)]).await;
    let stopped = get_pipeline(grpc, live).await;
    assert_eq!((stopped.status.as_str(), stopped.checkpoint_id), ("STOPPED", savepoint), "{stopped:?}");
    assert_eq!(number(row["rows_in"].as_str().unwrap()) as u64, stopped.rows_in, "{row}");
    assert_eq!(number(row["rows_out"].as_str().unwrap()) as u64, stopped.rows_out, "{row}");
    assert!(row["checkpoint"].as_str().unwrap().starts_with(&format!("#{savepoint} ")), "{row}");
    assert_eq!(row["uptime"], "\u{2014}");
    assert_eq!(row["buttons"], json!({"stop": false, "stop-savepoint": false, "restart": true}), "{row}");
    assert_no_errors(browser, "stopping").await;

    // ---- The stopped pipeline's page shows its final figures; Restart, then Stop.
    click(browser, &format!("tr[data-pipeline=\"{live}\"] td[data-field=\"id\"] a")).await;
    let shown = wait_js(
        browser,
        "the stopped pipeline's page",
        &format!("{{ const o = (() => {{ {STATS} }})(); return o.status.text === 'STOPPED' ? o : null; }}"),
        vec![],
    )
    .await;
    let value = |field: &str| -> u64 { shown[field]["value"].as_str().unwrap().parse().unwrap_or_else(|_| panic!("{field}: {shown}")) };
    assert_eq!(value("rows_in"), stopped.rows_in);
    assert_eq!(value("rows_out"), stopped.rows_out);
    assert_eq!(value("late_rows"), stopped.late_rows);
    assert_eq!(value("checkpoint"), stopped.checkpoint_id);
    assert_eq!(value("parallelism"), u64::from(stopped.parallelism));
    assert_eq!(shown["badge"], "STOPPED");
    assert_eq!(shown["uptime"]["text"], "\u{2014}");
    // Its graph keeps the last run's figures: exactly the API's now that nothing moves.
    two_more_polls(browser).await;
    let graph = wait_js(browser, "the stopped pipeline's graph", GRAPH, vec![]).await;
    let answer = api(console, "GET", &format!("/api/pipelines/{live}"), None);
    let operators = api_ops(&answer);
    assert_eq!(graph["operators"].as_array().unwrap().len(), operators.len(), "{graph}");
    for op in graph["operators"].as_array().unwrap() {
        let expected = &operators[op["id"].as_str().unwrap()];
        for field in ["rows_in", "state_bytes", "state_keys"] {
            assert_eq!(op[field], expected[field], "{field} of {op} vs {expected}");
        }
        assert_eq!(op["rate"].as_f64(), Some(0.0), "a stopped operator's rate: {op}");
    }
    let sink = &answer["sink"];
    assert_eq!(graph["sink"], json!({"rows_written": sink["rows_written"], "rows_committed": sink["rows_committed"]}), "{graph}");
    // Restart with the parallelism typed in (the one it has: a generator's
    // checkpoint resumes only with as many readers as it was saved with).
    let parallelism = stopped.parallelism.to_string();
    type_into(browser, "input#parallelism", &parallelism).await;
    click(browser, "button[data-action=\"restart\"]").await;
    let restarted = wait_pipeline(grpc, live, "a restart", |p| p.status == "RUNNING").await;
    assert_eq!(restarted.parallelism, stopped.parallelism, "{restarted:?}");
    let tasks = format!("{parallelism} tasks");
    wait_js(
        browser,
        "the restarted pipeline running",
        "const t = [...document.querySelectorAll('svg#graph g.stage-keyed text.stage-tasks')].map(e => e.textContent);
         return document.getElementById('pipeline-status').innerText === 'RUNNING' && t.length > 0 && t.every(x => x === arguments[0])
           && document.querySelector('[data-field=parallelism]').innerText === arguments[1]",
        vec![json!(tasks), json!(parallelism)],
    )
    .await;
    let notice = js(browser, "return document.getElementById('banner').innerText", vec![]).await;
    assert!(notice.as_str().unwrap().contains(&format!("Restarted pipeline {live}")), "{notice}");
    click(browser, "button[data-action=\"stop\"]").await;
    let stopped = wait_pipeline(grpc, live, "the stop", |p| p.status == "STOPPED").await;
    let shown = wait_js(browser, "the stop shown", &format!("{{ const o = (() => {{ {STATS} }})(); return o.badge === 'STOPPED' ? o : null; }}"), vec![]).await;
    assert_eq!(shown["rows_in"]["value"].as_str().unwrap().parse::<u64>().unwrap(), get_pipeline(grpc, live).await.rows_in, "{stopped:?}");
    assert_no_errors(browser, "restarting and stopping").await;
}
