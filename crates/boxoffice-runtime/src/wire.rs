//! What a gRPC server answers about the request itself, before or instead of
//! a handler: the [`WireGuard`] layer every boxoffice server (and every
//! in-process transport into one) runs its services behind.
//!
//! - A header list over [`MAX_REQUEST_HEADER_BYTES`] answers
//!   `RESOURCE_EXHAUSTED` (`HEADERS_TOO_LARGE`) for that request alone. The
//!   HTTP/2 layer reads header lists up to
//!   [`crate::limits::TRANSPORT_MAX_HEADER_LIST_BYTES`]
//!   so that such a request reaches this check instead of closing the
//!   connection every other call shares.
//! - A body that cannot be decoded answers `INVALID_ARGUMENT`
//!   (`MALFORMED_MESSAGE`): prost's decode failures (marked by the contracts'
//!   codec) and the framing errors of tonic's stream decoder (a bad
//!   compression flag, a frame cut short, no message at all), which tonic
//!   answers `INTERNAL`.
//! - A message over the service's limit answers `RESOURCE_EXHAUSTED`
//!   (`MESSAGE_TOO_LARGE`, with the limit), as the edge does, where tonic
//!   answers a bare `OUT_OF_RANGE`.
//!
//! Only answers the server gives before a handler runs are rewritten: a
//! handler answers `internal error` for its own failures, never these texts.

use std::collections::HashMap;
use std::task::{Context, Poll};

use futures::FutureExt as _;
use futures::future::{Either, Map, Ready};
use tonic::body::Body;
use tonic::{Code, Status};

use crate::limits::{MAX_REQUEST_HEADER_BYTES, header_list_bytes};
use crate::status::{self, reason};

/// The layer; see the module's documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct WireGuardLayer;

impl<S> tower::Layer<S> for WireGuardLayer {
    type Service = WireGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WireGuard { inner }
    }
}

#[derive(Clone, Debug)]
pub struct WireGuard<S> {
    inner: S,
}

type Answer<E> = Result<http::Response<Body>, E>;

impl<S, B> tower::Service<http::Request<B>> for WireGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        Either<Ready<Answer<S::Error>>, Map<S::Future, fn(Answer<S::Error>) -> Answer<S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let size = header_list_bytes(request.uri(), request.headers());
        if size > MAX_REQUEST_HEADER_BYTES {
            return Either::Left(futures::future::ready(Ok(
                headers_too_large(size).into_http()
            )));
        }
        Either::Right(
            self.inner
                .call(request)
                .map(rewrite::<S::Error> as fn(Answer<S::Error>) -> Answer<S::Error>),
        )
    }
}

/// `RESOURCE_EXHAUSTED` for a request whose headers are `size` bytes.
pub fn headers_too_large(size: usize) -> Status {
    status::with_reason_and_metadata(
        Code::ResourceExhausted,
        reason::HEADERS_TOO_LARGE,
        format!("request headers of {size} bytes; the limit is {MAX_REQUEST_HEADER_BYTES}"),
        HashMap::from([(
            "limit_bytes".to_owned(),
            MAX_REQUEST_HEADER_BYTES.to_string(),
        )]),
    )
}

/// `RESOURCE_EXHAUSTED` for a request message over `limit` bytes.
pub fn message_too_large(limit: usize) -> Status {
    status::with_reason_and_metadata(
        Code::ResourceExhausted,
        reason::MESSAGE_TOO_LARGE,
        format!("request message larger than {limit} bytes"),
        HashMap::from([("limit_bytes".to_owned(), limit.to_string())]),
    )
}

fn rewrite<E>(answer: Answer<E>) -> Answer<E> {
    let response = answer?;
    // Every answer of this kind is trailers-only: its status is in the
    // headers. A success (or a stream) has none there and passes untouched.
    match response.headers().get("grpc-status") {
        Some(code) if code.as_bytes() == b"13" || code.as_bytes() == b"11" => {}
        _ => return Ok(response),
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return Ok(response);
    };
    Ok(match request_error(&status) {
        Some(answer) => answer.into_http(),
        None => response,
    })
}

/// Texts tonic's stream decoder fails a request with, as `INTERNAL`; the
/// fifth is prost's decode failure through tonic's own codec, which the
/// services of other crates served beside ours (health, reflection) use
/// instead of the contracts' marked one, and the last the grpc-web
/// translation's failure to read a grpc-web-text body that is not base64
/// (both found by fuzz/grpc_web).
const TONIC_FRAMING_ERRORS: [&str; 6] = [
    "protocol error: received message with",
    "Unexpected EOF decoding stream",
    "Missing request message",
    "Error decompressing:",
    "failed to decode Protobuf message:",
    "tonic-web: ",
];

/// What a server should answer instead of `status`, when `status` is one
/// of tonic's (or the codec's) answers about an unreadable request.
pub fn request_error(status: &Status) -> Option<Status> {
    match status.code() {
        Code::Internal => {
            let malformed = status::reason_of(status).as_deref()
                == Some(boxoffice_contracts::codec::MALFORMED_MESSAGE)
                || TONIC_FRAMING_ERRORS
                    .iter()
                    .any(|prefix| status.message().starts_with(prefix));
            malformed.then(|| {
                boxoffice_contracts::codec::malformed(
                    Code::InvalidArgument,
                    format!("the request could not be decoded: {}", status.message()),
                )
            })
        }
        Code::OutOfRange
            if status
                .message()
                .starts_with("Error, decoded message length too large") =>
        {
            // "... found N bytes, the limit is: L bytes"
            let limit = status
                .message()
                .rsplit("the limit is: ")
                .next()
                .and_then(|rest| rest.split(' ').next())
                .and_then(|limit| limit.parse().ok())?;
            Some(message_too_large(limit))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_decode_failures_become_invalid_argument_with_a_reason() {
        for internal in [
            Status::internal(
                "protocol error: received message with invalid compression flag: 7 (valid flags are 0 and 1), while sending request",
            ),
            Status::internal("Unexpected EOF decoding stream."),
            Status::internal("Missing request message."),
            // tonic's own codec, as tonic-health and tonic-reflection use it.
            Status::internal("failed to decode Protobuf message: invalid varint"),
            // tonic-web reading grpc-web-text that is not base64.
            Status::internal("tonic-web: Invalid symbol 37, offset 0."),
            boxoffice_contracts::codec::malformed(
                Code::Internal,
                "failed to decode Protobuf message: invalid wire type",
            ),
        ] {
            let answer = request_error(&internal).expect("rewritten");
            assert_eq!(answer.code(), Code::InvalidArgument);
            assert_eq!(
                status::reason_of(&answer).as_deref(),
                Some(reason::MALFORMED_MESSAGE)
            );
        }
    }

    #[test]
    fn a_handlers_own_failures_pass_untouched() {
        let own = status::internal(&anyhow::anyhow!("relation does not exist"));
        assert!(request_error(&own).is_none());
        assert!(request_error(&Status::out_of_range("page 9 of 3")).is_none());
    }

    #[test]
    fn tonics_size_refusal_names_the_limit() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 70000 bytes, the limit is: 65536 bytes",
        );
        let answer = request_error(&tonic).expect("rewritten");
        assert_eq!(answer.code(), Code::ResourceExhausted);
        assert_eq!(
            status::reason_of(&answer).as_deref(),
            Some(reason::MESSAGE_TOO_LARGE)
        );
        assert!(answer.message().contains("65536"), "{}", answer.message());
    }
}
