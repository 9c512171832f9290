//! The request path: route by gRPC method, authenticate, rate-limit, admit
//! under the upstream's concurrency cap, set the deadline, and forward the
//! HTTP/2 request as-is to a balanced upstream endpoint, streaming the
//! response back. Messages are never decoded, so every service and every
//! streaming shape works without per-RPC code.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use boxoffice_accounts::token::{TokenError, TokenVerifier};
use boxoffice_runtime::identity::{ROLES_HEADER, USER_ID_HEADER};
use boxoffice_runtime::status::{self as status_details, ERROR_DOMAIN};
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::context;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::routes::{Access, MethodRoute, RouteTable};
use crate::upstream::{Cluster, ClusterSlot, Endpoint, Outstanding};

/// `ErrorInfo` reasons the edge answers with.
pub mod reason {
    pub const UNKNOWN_METHOD: &str = "UNKNOWN_METHOD";
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    pub const LOGIN_REQUIRED: &str = "LOGIN_REQUIRED";
    pub const ADMIN_REQUIRED: &str = "ADMIN_REQUIRED";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const UPSTREAM_OVERLOADED: &str = "UPSTREAM_OVERLOADED";
    pub const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";
    pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    pub const NOT_GRPC: &str = "NOT_GRPC";
}

/// Every header a client might use to claim an identity. Anything under
/// this prefix is set only by the edge.
const MESH_HEADER_PREFIX: &str = "x-boxoffice-";
/// Attempts per call when an endpoint refuses or never receives a request.
const MAX_ATTEMPTS: usize = 3;

/// The client's TCP peer, set per connection.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

pub type EdgeBody = tonic::body::Body;

pub struct Limits {
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub max_message_bytes: usize,
    pub access_log: bool,
}

pub struct EdgeState {
    pub routes: RouteTable,
    pub clusters: Vec<Arc<Cluster>>,
    pub verifier: TokenVerifier,
    pub by_address: RateLimiter<IpAddr>,
    pub by_user: RateLimiter<Uuid>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// The edge's own health and reflection.
    pub local: tonic::service::Routes,
}

fn is_local(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// One call's record: becomes the access log line and the metrics when the
/// response ends (or is abandoned).
struct CallRecord {
    state: Arc<EdgeState>,
    start: Instant,
    route: Option<Arc<MethodRoute>>,
    path: String,
    peer: Option<SocketAddr>,
    request_id: HeaderValue,
    user: Option<Uuid>,
    upstream: Option<Arc<Endpoint>>,
}

impl CallRecord {
    fn finish(self, code: i32) {
        let duration = self.start.elapsed();
        self.state
            .metrics
            .record(self.route.as_ref().map(|route| route.index), code, duration);
        if self.state.limits.access_log {
            tracing::info!(
                target: "boxoffice_edge::access",
                method = %self.path,
                status = crate::metrics::code_name(usize::try_from(code).unwrap_or(2)),
                duration_ms = duration.as_secs_f64() * 1000.0,
                user = self.user.map(|user| user.to_string()).unwrap_or_default(),
                upstream = self.upstream.as_ref().map(|endpoint| endpoint.authority.as_str()).unwrap_or(""),
                peer = self.peer.map(|peer| peer.to_string()).unwrap_or_default(),
                request_id = self.request_id.to_str().unwrap_or(""),
                "request"
            );
        }
    }
}

fn status_with(code: Code, reason: &str, message: &str) -> Status {
    status_details::with_reason(code, reason, message.to_owned())
}

fn retry_status(code: Code, reason: &str, message: &str, wait: Duration) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(wait));
    Status::with_error_details(code, message, details)
}

/// A finished call that never reached an upstream.
fn reject(record: CallRecord, status: Status) -> Response<EdgeBody> {
    let code = status.code() as i32;
    let request_id = record.request_id.clone();
    record.finish(code);
    let mut response = status.into_http::<EdgeBody>();
    response
        .headers_mut()
        .insert(context::REQUEST_ID, request_id);
    response
}

fn bearer_token(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let text = match value.to_str() {
        Ok(text) => text.trim(),
        Err(_) => return Some(Err(())),
    };
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Some(Ok(token.trim()))
        }
        _ => Some(Err(())),
    }
}

/// Removes what must not travel upstream: HTTP/1 connection headers (HTTP/2
/// forbids them), the bearer token (services trust metadata, not tokens) and
/// any identity metadata the client forged.
fn scrub(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HOST,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(MESH_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

pub async fn handle(state: Arc<EdgeState>, request: Request<EdgeBody>) -> Response<EdgeBody> {
    let start = Instant::now();
    let path = request.uri().path().to_owned();
    if is_local(&path) {
        return match state.local.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let peer = request.extensions().get::<PeerAddr>().map(|peer| peer.0);
    let request_id = context::request_id(request.headers().get(context::REQUEST_ID));
    let route = state.routes.lookup(&path).cloned();
    let mut record = CallRecord {
        state: state.clone(),
        start,
        route: route.clone(),
        path,
        peer,
        request_id,
        user: None,
        upstream: None,
    };

    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !is_grpc {
        return reject(
            record,
            status_with(
                Code::Unimplemented,
                reason::NOT_GRPC,
                "the edge speaks gRPC and grpc-web only",
            ),
        );
    }
    let route = match route {
        Some(route) if route.access != Access::Internal => route,
        // Internal methods look exactly like methods that do not exist.
        _ => {
            return reject(
                record,
                status_with(
                    Code::Unimplemented,
                    reason::UNKNOWN_METHOD,
                    "unknown method",
                ),
            );
        }
    };

    // Authentication: a token that is sent must be valid, even on public
    // methods, so a client never silently runs as anonymous.
    let caller = match bearer_token(request.headers()) {
        None => None,
        Some(Err(())) => {
            state
                .metrics
                .unauthenticated
                .fetch_add(1, Ordering::Relaxed);
            return reject(
                record,
                status_with(
                    Code::Unauthenticated,
                    reason::TOKEN_INVALID,
                    "authorization must be 'Bearer <token>'",
                ),
            );
        }
        Some(Ok(token)) => match state.verifier.verify(token) {
            Ok(verified) => Some(verified),
            Err(error) => {
                state
                    .metrics
                    .unauthenticated
                    .fetch_add(1, Ordering::Relaxed);
                let (reason, message) = match error {
                    TokenError::Expired => (
                        reason::TOKEN_EXPIRED,
                        "the access token has expired; log in again",
                    ),
                    TokenError::Invalid => (reason::TOKEN_INVALID, "the access token is not valid"),
                };
                return reject(record, status_with(Code::Unauthenticated, reason, message));
            }
        },
    };
    record.user = caller.as_ref().map(|caller| caller.user_id);
    match (route.access, &caller) {
        (Access::User | Access::Admin, None) => {
            return reject(
                record,
                status_with(
                    Code::Unauthenticated,
                    reason::LOGIN_REQUIRED,
                    "this call needs a logged-in user",
                ),
            );
        }
        (Access::Admin, Some(caller)) if !caller.roles.iter().any(|role| role == "admin") => {
            return reject(
                record,
                status_with(
                    Code::PermissionDenied,
                    reason::ADMIN_REQUIRED,
                    "this call needs the admin role",
                ),
            );
        }
        _ => {}
    }

    // Rate limits: per address always, per user when there is one.
    let now = Instant::now();
    if let Some(peer) = peer
        && let Err(wait) = state.by_address.take(&peer.ip(), now)
    {
        state
            .metrics
            .rate_limited_address
            .fetch_add(1, Ordering::Relaxed);
        return reject(
            record,
            retry_status(
                Code::ResourceExhausted,
                reason::RATE_LIMITED,
                "too many requests from this address",
                wait,
            ),
        );
    }
    if let Some(caller) = &caller
        && let Err(wait) = state.by_user.take(&caller.user_id, now)
    {
        state
            .metrics
            .rate_limited_user
            .fetch_add(1, Ordering::Relaxed);
        return reject(
            record,
            retry_status(
                Code::ResourceExhausted,
                reason::RATE_LIMITED,
                "too many requests for this user",
                wait,
            ),
        );
    }

    // Deadline: the client's, else the default for unary calls; never past
    // the maximum. Streams without a deadline may stay open indefinitely.
    let asked = request
        .headers()
        .get(context::GRPC_TIMEOUT)
        .and_then(context::parse_grpc_timeout);
    let timeout = match (asked, route.server_streaming || route.client_streaming) {
        (Some(asked), _) => Some(asked.min(state.limits.max_timeout)),
        (None, false) => Some(state.limits.default_timeout),
        (None, true) => None,
    };
    let deadline = timeout.map(|timeout| start + timeout);

    let cluster = state.clusters[route.cluster].clone();
    let Some(slot) = cluster.try_acquire() else {
        return reject(
            record,
            retry_status(
                Code::ResourceExhausted,
                reason::UPSTREAM_OVERLOADED,
                "the service is at capacity; retry shortly",
                Duration::from_millis(100),
            ),
        );
    };

    let (mut parts, body) = request.into_parts();
    scrub(&mut parts.headers);
    if let Some(caller) = &caller {
        if let Ok(value) = HeaderValue::from_str(&caller.user_id.to_string()) {
            parts.headers.insert(USER_ID_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&caller.roles.join(",")) {
            parts.headers.insert(ROLES_HEADER, value);
        }
    }
    let traceparent = context::traceparent(parts.headers.get(context::TRACEPARENT));
    parts.headers.insert(context::TRACEPARENT, traceparent);
    parts
        .headers
        .insert(context::REQUEST_ID, record.request_id.clone());
    parts
        .headers
        .insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(deadline) = deadline {
        parts.headers.insert(
            context::GRPC_TIMEOUT,
            context::format_grpc_timeout(deadline.saturating_duration_since(Instant::now())),
        );
    }
    parts.version = Version::HTTP_2;

    // Unary requests are read whole (bounded by the message limit and the
    // deadline), which checks their size and makes them safe to resend.
    let body = if route.client_streaming {
        RequestBody::Streaming(Some(body))
    } else {
        let limit = state.limits.max_message_bytes + 5;
        let collect = http_body_util::Limited::new(body, limit).collect();
        let collected = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), collect).await {
                Ok(result) => result,
                Err(_) => {
                    return reject(
                        record,
                        status_with(
                            Code::DeadlineExceeded,
                            reason::DEADLINE_EXCEEDED,
                            "deadline exceeded",
                        ),
                    );
                }
            },
            None => collect.await,
        };
        match collected {
            Ok(collected) => RequestBody::Buffered(collected.to_bytes()),
            Err(error)
                if error
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return reject(
                    record,
                    status_with(
                        Code::ResourceExhausted,
                        reason::MESSAGE_TOO_LARGE,
                        &format!(
                            "request message larger than {} bytes",
                            state.limits.max_message_bytes
                        ),
                    ),
                );
            }
            Err(_) => {
                return reject(
                    record,
                    status_with(Code::Cancelled, "CANCELLED", "the client stopped sending"),
                );
            }
        }
    };

    if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
        return reject(
            record,
            status_with(
                Code::DeadlineExceeded,
                reason::DEADLINE_EXCEEDED,
                "deadline exceeded",
            ),
        );
    }
    let forward = forward(&state, &cluster, &parts, body);
    let outcome = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), forward).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return reject(
                    record,
                    status_with(
                        Code::DeadlineExceeded,
                        reason::DEADLINE_EXCEEDED,
                        "deadline exceeded",
                    ),
                );
            }
        },
        None => forward.await,
    };
    let (response, endpoint, outstanding) = match outcome {
        Ok(forwarded) => forwarded,
        Err(status) => return reject(record, status),
    };
    record.upstream = Some(endpoint);

    let (mut head, incoming) = response.into_parts();
    head.headers
        .insert(context::REQUEST_ID, record.request_id.clone());
    let header_code = head
        .headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok());
    // A stream holds its concurrency slot only until it is established:
    // long-lived watches must not starve short calls of the cap.
    let slot = if route.server_streaming {
        None
    } else {
        Some(slot)
    };
    // A trailers-only answer (every error) is complete already: HTTP/2 may
    // never poll its empty body, so record it now.
    let record = match header_code {
        Some(code) if http_body::Body::is_end_stream(&incoming) => {
            record.finish(code);
            None
        }
        _ => Some(record),
    };
    let body = ObservedBody {
        inner: incoming,
        record,
        header_code,
        broken: false,
        _slot: slot,
        _outstanding: outstanding,
    };
    Response::from_parts(head, EdgeBody::new(body))
}

enum RequestBody {
    Buffered(Bytes),
    Streaming(Option<EdgeBody>),
}

type Forwarded = (Response<hyper::body::Incoming>, Arc<Endpoint>, Outstanding);

fn is_refused_stream(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(h2_error) = current.downcast_ref::<h2::Error>() {
            return h2_error.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = current.source();
    }
    false
}

fn upstream_unavailable() -> Status {
    status_with(
        Code::Unavailable,
        reason::UPSTREAM_UNAVAILABLE,
        "the service is unavailable; retry shortly",
    )
}

/// Sends to a balanced endpoint; resends only what provably never reached
/// an application (never sent, refused by HTTP/2, or no connection).
async fn forward(
    state: &EdgeState,
    cluster: &Cluster,
    parts: &http::request::Parts,
    mut body: RequestBody,
) -> Result<Forwarded, Status> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut excluded: Vec<usize> = Vec::new();
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            state.metrics.retries.fetch_add(1, Ordering::Relaxed);
        }
        let Some(index) = cluster.pick(&excluded) else {
            return Err(upstream_unavailable());
        };
        let endpoint = cluster.endpoints[index].clone();
        let (mut send, outstanding) = match endpoint.connection().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(endpoint = %endpoint.authority, %error, "cannot connect upstream");
                endpoint.report_transport_failure();
                excluded.push(index);
                continue;
            }
        };
        let upstream_body = match &mut body {
            RequestBody::Buffered(bytes) => EdgeBody::new(http_body_util::Full::new(bytes.clone())),
            RequestBody::Streaming(streaming) => match streaming.take() {
                Some(streaming) => streaming,
                None => return Err(upstream_unavailable()),
            },
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(endpoint.authority.as_str())
            .path_and_query(path_and_query.clone())
            .build()
            .map_err(|_| upstream_unavailable())?;
        let mut request = Request::new(upstream_body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = parts.headers.clone();
        match send.try_send_request(request).await {
            Ok(response) => return Ok((response, endpoint, outstanding)),
            Err(mut error) => {
                let unsent = error.take_message();
                let refused = is_refused_stream(error.error());
                tracing::debug!(endpoint = %endpoint.authority, error = %error.error(), "upstream request failed");
                match unsent {
                    // The connection was closing; the endpoint may be fine.
                    Some(request) => {
                        if let RequestBody::Streaming(slot) = &mut body {
                            *slot = Some(request.into_body());
                        }
                    }
                    None if refused && matches!(body, RequestBody::Buffered(_)) => {
                        endpoint.report_transport_failure();
                        excluded.push(index);
                    }
                    None => {
                        endpoint.report_transport_failure();
                        return Err(upstream_unavailable());
                    }
                }
            }
        }
    }
    Err(upstream_unavailable())
}

pin_project_lite::pin_project! {
    /// The upstream's response body on its way to the client: watches for
    /// the status in the trailers, turns an upstream that dies mid-stream
    /// into a clean `UNAVAILABLE` instead of a reset, and finishes the call
    /// record when the body ends or the client goes away.
    struct ObservedBody {
        #[pin]
        inner: hyper::body::Incoming,
        record: Option<CallRecord>,
        header_code: Option<i32>,
        // Set once a broken upstream stream was closed with UNAVAILABLE trailers.
        broken: bool,
        _slot: Option<ClusterSlot>,
        _outstanding: Outstanding,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                record.finish(Code::Cancelled as i32);
            }
        }
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.broken {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<i32>().ok())
                        .unwrap_or(Code::Unknown as i32);
                    if let Some(record) = this.record.take() {
                        record.finish(code);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "upstream response broke off");
                if let Some(record) = this.record.take() {
                    if let Some(endpoint) = &record.upstream {
                        endpoint.report_transport_failure();
                    }
                    record.finish(Code::Unavailable as i32);
                }
                *this.broken = true;
                let mut trailers = HeaderMap::new();
                let status = upstream_unavailable();
                if status.add_header(&mut trailers).is_err() {
                    trailers.insert("grpc-status", HeaderValue::from_static("14"));
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.take() {
                    record.finish(this.header_code.unwrap_or(Code::Unknown as i32));
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.broken || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_identity_and_connection_headers_are_scrubbed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_ID_HEADER,
            HeaderValue::from_static("00000000-0000-0000-0000-000000000001"),
        );
        headers.insert(ROLES_HEADER, HeaderValue::from_static("admin"));
        headers.insert("x-boxoffice-anything", HeaderValue::from_static("x"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert("x-request-id", HeaderValue::from_static("keep-me"));
        scrub(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-request-id"));
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut headers = HeaderMap::new();
        assert!(bearer_token(&headers).is_none());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some(Ok("abc")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), Some(Err(())));
    }
}
