//! Reading a consumer's queue many records at a time, through librdkafka's batch
//! API (`rd_kafka_consume_batch_queue`), which `rdkafka` does not wrap.
//!
//! Taking records one by one (`StreamConsumer::recv`) costs a queue lock, a clock
//! read and a wake-up per record; a batch pays them once. This module is the only
//! place with `unsafe` Kafka code: every pointer it reads stays inside a call.

use std::ffi::CStr;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Timestamp;

/// The consumer queue of one consumer; must not outlive it (the reader drops it first).
pub(crate) struct BatchQueue {
    queue: *mut rd::rd_kafka_queue_t,
    slots: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: librdkafka queues are thread-safe; the pointer is only used through `&mut self`.
unsafe impl Send for BatchQueue {}

/// One record of a batch, borrowed from librdkafka until the callback returns.
pub(crate) struct RawRecord<'a> {
    /// The consumer error this entry carries instead of a record.
    pub error: Option<String>,
    pub payload: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    pub offset: i64,
    pub timestamp: Timestamp,
    message: *const rd::rd_kafka_message_t,
}

impl RawRecord<'_> {
    /// The record's headers in the order they were written (a value may be
    /// null); empty when it has none.
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: `message` is valid during the callback; librdkafka owns `headers`.
        let err = unsafe { rd::rd_kafka_message_headers(self.message, &mut headers) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return out;
        }
        for idx in 0.. {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: as above; name/value point into the message while it lives.
            let err = unsafe { rd::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size) };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: librdkafka returns a NUL-terminated name and `size` bytes of value (or a null value).
            let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
            let value = unsafe { bytes(value, size) }.map(<[u8]>::to_vec);
            out.push((name, value));
        }
        out
    }
}

/// `len` bytes at `ptr`, or `None` for a null pointer.
///
/// SAFETY: `ptr` must point to `len` readable bytes for `'a` when not null.
unsafe fn bytes<'a>(ptr: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr.cast::<u8>(), len))
}

impl BatchQueue {
    /// The queue `consumer` delivers its records (and errors) to.
    pub fn of<C: ConsumerContext>(consumer: &BaseConsumer<C>, max: usize) -> Self {
        // SAFETY: the client pointer is valid; the returned queue holds a reference we release in Drop.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        BatchQueue { queue, slots: vec![std::ptr::null_mut(); max.max(1)] }
    }

    /// Takes up to `max` records that are ready, without waiting, handing each to `each`.
    pub fn take(&mut self, max: usize, mut each: impl FnMut(RawRecord<'_>)) -> usize {
        if self.queue.is_null() {
            return 0;
        }
        let max = max.min(self.slots.len());
        // SAFETY: `slots` has room for `max` pointers; a timeout of 0 never blocks.
        let n = unsafe { rd::rd_kafka_consume_batch_queue(self.queue, 0, self.slots.as_mut_ptr(), max) };
        if n <= 0 {
            return 0;
        }
        for &message in &self.slots[..n as usize] {
            // SAFETY: librdkafka returned `n` valid messages, each destroyed right after use.
            unsafe {
                let m = &*message;
                let error = (m.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
                    let text = CStr::from_ptr(rd::rd_kafka_err2str(m.err)).to_string_lossy().into_owned();
                    format!("consumer error: {text}")
                });
                let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                let millis = rd::rd_kafka_message_timestamp(message, &mut kind);
                let timestamp = match kind {
                    rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => Timestamp::CreateTime(millis),
                    rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => Timestamp::LogAppendTime(millis),
                    _ => Timestamp::NotAvailable,
                };
                each(RawRecord { error, payload: bytes(m.payload, m.len), key: bytes(m.key, m.key_len), offset: m.offset, timestamp, message });
                rd::rd_kafka_message_destroy(message);
            }
        }
        n as usize
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        if !self.queue.is_null() {
            // SAFETY: releases the reference taken in `of`.
            unsafe { rd::rd_kafka_queue_destroy(self.queue) };
        }
    }
}
