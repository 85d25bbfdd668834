//! The process's allocators: every Rust allocation (Arrow buffers, rows kept in
//! state) goes to mimalloc; librdkafka's records go to glibc's malloc, tuned here.
//!
//! With glibc's defaults, buffers above 128 KB (a batch's string column) are
//! mmapped and unmapped each batch, and the per-thread heaps are trimmed back as
//! soon as a batch is freed, so the next batch faults its pages in again. Keeping
//! up to 32 MB blocks on the heap and trimming only above 256 MB of free memory
//! measured 4-13 % more Kafka JSON decoded per CPU-second (`benches/kafka.rs`,
//! 4 M events, alternating runs with and without; measured when Arrow's buffers
//! still came from glibc too). The price: up to 256 MB of
//! freed memory may stay with the process instead of going back to the system.

/// Rust's allocations go to mimalloc: the operators that keep rows as bytes
/// (joins, ranks) allocate and free millions of small buffers, where glibc's
/// malloc spent a third of the CPU (`perf` over Nexmark q19).
///
/// Its price is memory. Measured again on 2026-12-07 (`--profile dev`, two runs
/// each, glibc tuned as in [`tune`]): glibc used the same CPU on the file
/// workloads of `benches/files.rs`, 7 % less on q19, 15 % more on q7, 20 % more on
/// q8 and 5 % more decoding Kafka JSON; but peak RSS halved (TUMBLE 93 against
/// 180 MB, one-key SESSION 87 against 125 to 150 MB). heaptrack (with glibc)
/// puts the one-key SESSION's live heap at 10 MB at its peak: the rest is freed
/// memory mimalloc keeps, batches being allocated on the reading thread and freed
/// on others. Throughput won; the memory is what it costs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (v3's `mimalloc.h`; the crate exports no
/// constant for it): how long freed memory stays committed before it is handed
/// back to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the settings, unless `GLIBC_TUNABLES` already sets glibc's.
///
/// mimalloc hands freed memory back to the system 10 ms after it is freed by
/// default, so each Kafka batch faulted its buffers' pages in again: decoding
/// fell from 1.23 to 0.94 M events per CPU-second (`benches/kafka.rs`, medians of
/// 3 runs; a 1 s delay gave 0.96). Never handing it back gave 1.26 (5 runs), as
/// the glibc settings below keep freed memory for librdkafka. The price, as
/// there: a process keeps the memory of its peak.
pub fn tune() {
    // SAFETY: mi_option_set only changes an allocator parameter.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; it is called before
        // other threads start allocating.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}
