//! Arbitrary bytes as the body of each request type, through the server's
//! decode path (tonic's stream decoder with the contracts' codec): a body
//! that does not decode must be refused as the caller's mistake
//! (`INVALID_ARGUMENT` with `MALFORMED_MESSAGE`, or `RESOURCE_EXHAUSTED`
//! with `MESSAGE_TOO_LARGE`), never as `INTERNAL`, never with a panic.
//!
//! Input: a selector byte (the RPC; its top bit frames the rest as one
//! uncompressed message, otherwise the rest is the raw HTTP body).
#![no_main]

use boxoffice_fuzz::{frame, rpc, single_frame};
use boxoffice_runtime::status::{reason, reason_of};
use boxoffice_runtime::wire::request_error;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tonic::Code;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let rpc = rpc(selector & 0x7f);
    let body = if selector & 0x80 != 0 {
        frame(0, rest)
    } else {
        Bytes::copy_from_slice(rest)
    };
    let decoded = (rpc.server_decode)(body.clone(), rpc.max_request_bytes);

    // What the server decodes is what prost decodes, for one plain frame.
    if let Some(message) = single_frame(&body)
        && message.len() <= rpc.max_request_bytes
    {
        assert_eq!(
            decoded.is_ok(),
            (rpc.decodes)(message),
            "{}: tonic and prost disagree: {decoded:?}",
            rpc.path
        );
    }

    if let Err(status) = decoded {
        let answer = request_error(&status).unwrap_or_else(|| {
            panic!(
                "{}: a body that does not decode is not answered as the caller's mistake: {status:?}",
                rpc.path
            )
        });
        let expected = match answer.code() {
            Code::InvalidArgument => reason::MALFORMED_MESSAGE,
            Code::ResourceExhausted => reason::MESSAGE_TOO_LARGE,
            other => panic!("{}: refused with {other:?}: {answer:?}", rpc.path),
        };
        assert_eq!(reason_of(&answer).as_deref(), Some(expected), "{answer:?}");
    }
});
