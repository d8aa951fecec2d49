//! An input record's headers, copied for its dead letter. Read through librdkafka with the
//! names as bytes: rdkafka's own accessors panic on a header name that is not UTF-8, which a
//! producer may send (the protocol does not check it), and an input must never stop the
//! service.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use rdkafka::bindings::{rd_kafka_header_cnt, rd_kafka_header_get_all, rd_kafka_message_headers, rd_kafka_resp_err_t};
use rdkafka::message::BorrowedMessage;

use crate::outputs::RecordHeader;

/// The headers of `m` in order: each name (not UTF-8: its bytes read lossily, U+FFFD for
/// what is not) with its value (`None` for a null value).
#[allow(unsafe_code)]
pub fn copy(m: &BorrowedMessage<'_>) -> Box<[RecordHeader]> {
    let mut out = Vec::new();
    // SAFETY: `m.ptr()` is the live message `m` borrows (it outlives this call). librdkafka
    // owns the header list it returns and the names and values in it, all valid while the
    // message is: they are read, then copied, before returning. A name is NUL-terminated (a
    // name with a NUL inside ends there, as librdkafka stores it); a value is `size` bytes, or
    // null.
    unsafe {
        let mut headers = ptr::null_mut();
        if rd_kafka_message_headers(m.ptr(), &mut headers) != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || headers.is_null()
        {
            return Box::default();
        }
        for idx in 0..rd_kafka_header_cnt(headers) {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) = (ptr::null(), ptr::null(), 0);
            if rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size)
                != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                continue;
            }
            let name: Box<str> = String::from_utf8_lossy(CStr::from_ptr(name).to_bytes()).into();
            let value = (!value.is_null()).then(|| Box::from(std::slice::from_raw_parts(value.cast::<u8>(), size)));
            out.push((name, value));
        }
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::bindings::{
        rd_kafka_error_destroy, rd_kafka_produceva, rd_kafka_vtype_t, rd_kafka_vu_s__bindgen_ty_1,
        rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1, rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2, rd_kafka_vu_t,
    };
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, Producer};
    use rdkafka::Message;

    use super::*;
    use crate::mock::EmbeddedCluster;
    use crate::KafkaConfig;

    /// Produces `value` to partition 0 of `topic` with one header, named by raw bytes (which
    /// rdkafka's safe API cannot send unless they are UTF-8).
    #[allow(unsafe_code)]
    fn produce_with_header(producer: &BaseProducer, topic: &str, name: &[u8], value: &[u8]) {
        let topic = std::ffi::CString::new(topic).unwrap();
        let mut name = name.to_vec();
        name.push(0);
        let vu = |vtype, u| rd_kafka_vu_t { vtype, u };
        let args = [
            vu(rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC, rd_kafka_vu_s__bindgen_ty_1 { cstr: topic.as_ptr() }),
            vu(rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION, rd_kafka_vu_s__bindgen_ty_1 { i32_: 0 }),
            vu(
                rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: value.as_ptr() as *mut c_void,
                        size: value.len(),
                    },
                },
            ),
            vu(
                rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
                rd_kafka_vu_s__bindgen_ty_1 {
                    header: rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: name.as_ptr().cast(),
                        val: value.as_ptr().cast(),
                        size: value.len() as isize,
                    },
                },
            ),
        ];
        // SAFETY: the client handle is live for the call; every pointer in `args` points into
        // `topic`, `name` and `value`, alive for the call (librdkafka copies the value, since no
        // free flag is given, and the header); an error returned is destroyed once.
        unsafe {
            let error = rd_kafka_produceva(producer.client().native_ptr(), args.as_ptr(), args.len());
            assert!(error.is_null(), "produce refused");
            if !error.is_null() {
                rd_kafka_error_destroy(error);
            }
        }
    }

    /// A header name that is not UTF-8 (the protocol allows any bytes) is read lossily instead
    /// of panicking the service, as rdkafka's accessors would; the value is kept as is.
    #[test]
    fn a_header_name_that_is_not_utf8_is_read_lossily() {
        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = EmbeddedCluster::start(1, &base).unwrap();
        let config = cluster.service_config(base);
        let topic = config.topics.chat.as_str();
        let producer: BaseProducer = config.client().create().unwrap();
        produce_with_header(&producer, topic, &[0xff, b'h', b'i'], b"there");
        producer.flush(Duration::from_secs(10)).unwrap();
        let consumer: BaseConsumer = config.consumer().create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(20), "the record was not consumed");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let headers = copy(&m);
                    assert_eq!(&*headers, &[("\u{fffd}hi".into(), Some(b"there".to_vec().into_boxed_slice()))]);
                    assert_eq!(m.payload(), Some(&b"there"[..]));
                    break;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => panic!("consumer error: {e}"),
            }
        }
    }
}
