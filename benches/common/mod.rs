//! What the benchmark binaries share.
#![allow(dead_code)] // each bench uses a subset

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: utime is field 12, stime 13 (0-based from the state field).
    (ticks(11) + ticks(12)) / 100.0
}

/// Minor page faults this process has taken (fresh pages the kernel had to zero), from /proc/self/stat.
pub fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat.rsplit(')').next().unwrap_or_default().split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// The value after `flag` in `args`, parsed, or `default`.
pub fn flag_value(args: &[String], flag: &str, default: u64) -> u64 {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The value at fraction `p` (0.5 for the median) of `sorted`, which is not empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A materialized view `big` of `rows` rows (`id` 0.., `label`, `doubled` = 2 * `id`)
/// over a bounded generator: what the point-lookup benchmarks read.
pub fn keys_view(rows: u64) -> String {
    format!(
        "CREATE TABLE keys (id BIGINT, label STRING) WITH ('connector' = 'datagen', 'number-of-rows' = '{rows}', 'rows-per-second' = '0', 'fields.id.kind' = 'sequence', 'fields.label.length' = '12');
         CREATE MATERIALIZED VIEW big AS SELECT id, label, id * 2 AS doubled FROM keys"
    )
}

/// Waits until the pipeline of [`keys_view`] on `server` has finished with all
/// `rows` rows, and says how long the view took to build since `started`.
pub async fn wait_keys_view(server: &eddy::server::Server, rows: u64, started: std::time::Instant) {
    loop {
        let status = server.pipeline("big").expect("the view's pipeline").status();
        if status.status != "RUNNING" {
            assert_eq!((status.status.as_str(), status.state_rows), ("FINISHED", rows), "{status:?}");
            println!("view `big`: {rows} rows, built in {:.2}s", started.elapsed().as_secs_f64());
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What [`run_script`] measured: the run's summary and metrics, and the wall and CPU seconds it took.
pub struct Measured {
    pub summary: eddy::RunSummary,
    /// The first pipeline's figures (the benchmarks run one).
    pub metrics: std::sync::Arc<eddy_engine::PipelineMetrics>,
    pub wall: f64,
    pub cpu: f64,
}

/// Runs `sql` (tables and `INSERT INTO` pipelines) to the end in-process, as
/// `eddy run` does, timing only the pipelines, not the planning.
pub fn run_script(runtime: &tokio::runtime::Runtime, sql: &str) -> Result<Measured, eddy::EddyError> {
    run_script_watching(runtime, sql, std::time::Duration::from_secs(3600), |_| {})
}

/// [`run_script`], calling `watch` with the first pipeline's metrics every
/// `every` while it runs (to follow figures that change during a run, such as
/// each checkpoint's duration and size).
pub fn run_script_watching(
    runtime: &tokio::runtime::Runtime,
    sql: &str,
    every: std::time::Duration,
    mut watch: impl FnMut(&eddy_engine::PipelineMetrics),
) -> Result<Measured, eddy::EddyError> {
    runtime.block_on(async {
        let mut session = eddy::Session::new();
        let pipelines = session.execute_script(sql).await?;
        let group = eddy_engine::metrics::PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str()));
        let (_tx, stop) = tokio::sync::watch::channel(false);
        let cpu = cpu_seconds();
        let started = std::time::Instant::now();
        let mut no_select_sinks = |_: &eddy::PipelineSpec| -> Box<dyn eddy_engine::Sink> { unreachable!("INSERT only") };
        let run = session.run(&pipelines, &group, stop, &mut no_select_sinks);
        let mut run = std::pin::pin!(run);
        let mut ticks = tokio::time::interval(every);
        let summary = loop {
            tokio::select! {
                summary = run.as_mut() => break summary?,
                _ = ticks.tick() => {
                    if let Some(metrics) = group.get(0) {
                        watch(metrics);
                    }
                }
            }
        };
        let metrics = group.get(0).cloned().unwrap_or_default();
        Ok(Measured { summary, metrics, wall: started.elapsed().as_secs_f64(), cpu: cpu_seconds() - cpu })
    })
}

/// Bytes of every file under `dir`: a checkpoint directory's size.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum())
        .unwrap_or(0)
}

/// Produces `rate` events a second to `topic` on a thread of its own, event `i`
/// from `first` on as `event(i)` makes it, until [`Feeder::stop`]: a steady input
/// for a pipeline to read once it runs again.
pub struct Feeder {
    feeding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    pub fn start(
        bootstrap: &str,
        topic: &str,
        rate: u64,
        first: u64,
        event: impl Fn(u64) -> eddy_connectors::kafka::testing::TestRecord + Send + 'static,
    ) -> Feeder {
        let feeding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (still, bootstrap, topic) = (std::sync::Arc::clone(&feeding), bootstrap.to_string(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let kafka = eddy_connectors::kafka::testing::producer(&bootstrap);
            let mut next = first;
            while still.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<_> = (next..next + rate / 10).map(&event).collect();
                runtime.block_on(eddy_connectors::kafka::testing::produce_with(&kafka, &topic, &batch));
                next += rate / 10;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        Feeder { feeding, thread }
    }

    pub fn stop(self) {
        self.feeding.store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
