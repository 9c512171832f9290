//! The request path: route by gRPC method, authenticate, rate-limit, admit
//! under the upstream's concurrency cap, set the deadline, and forward the
//! HTTP/2 request as-is to a balanced upstream endpoint, streaming the
//! response back. Messages are never decoded, so every service and every
//! streaming shape works without per-RPC code.
//!
//! Built for the cost per call: the request's own header map travels
//! upstream (scrubbed in place), the route, identity headers and metrics
//! slots are resolved once (at start, or once per token), response frames
//! are handed from the upstream's HTTP/2 stream to the client's untouched,
//! and nothing on the path formats strings unless an access log line is
//! actually written.

use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use boxoffice_accounts::token::{TokenError, unix_now};
use boxoffice_runtime::identity::{ROLES_HEADER, SESSION_ID_HEADER, USER_ID_HEADER};
use boxoffice_runtime::limits::{MAX_REQUEST_HEADER_BYTES, header_list_bytes};
use boxoffice_runtime::status::{self as status_details, ERROR_DOMAIN};
use boxoffice_runtime::transport::Transport;
use boxoffice_runtime::wire;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::ServiceExt as _;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::audit::{Action, AuditTrail};
use crate::auth::{Authenticator, Identity};
use crate::context;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::routes::{Access, MethodRoute, RouteTable};
use crate::sold_out::SoldOut;
use crate::upstream::{Cluster, ClusterSlot, Endpoint, Outstanding};

/// `ErrorInfo` reasons the edge answers with.
pub(crate) mod reason {
    pub(crate) const UNKNOWN_METHOD: &str = "UNKNOWN_METHOD";
    pub(crate) const TOKEN_INVALID: &str = "TOKEN_INVALID";
    pub(crate) const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    pub(crate) use boxoffice_contracts::reason::{ADMIN_REQUIRED, LOGIN_REQUIRED};
    pub(crate) const SESSION_REVOKED: &str = "SESSION_REVOKED";
    pub(crate) const RATE_LIMITED: &str = "RATE_LIMITED";
    pub(crate) const UPSTREAM_OVERLOADED: &str = "UPSTREAM_OVERLOADED";
    pub(crate) const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";
    pub(crate) const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
    pub(crate) const NOT_GRPC: &str = "NOT_GRPC";
    pub(crate) const EVENT_SOLD_OUT: &str = "EVENT_SOLD_OUT";
    pub(crate) const AUDIT_UNAVAILABLE: &str = "AUDIT_UNAVAILABLE";
}

/// Every header a client might use to claim an identity. Anything under
/// this prefix is set only by the edge.
const MESH_HEADER_PREFIX: &str = "x-boxoffice-";
/// Attempts per call when an endpoint refuses or never receives a request.
const MAX_ATTEMPTS: usize = 3;

const REQUEST_ID: HeaderName = HeaderName::from_static(context::REQUEST_ID);
const TRACEPARENT: HeaderName = HeaderName::from_static(context::TRACEPARENT);
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static(context::GRPC_TIMEOUT);
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const USER_ID: HeaderName = HeaderName::from_static(USER_ID_HEADER);
const ROLES: HeaderName = HeaderName::from_static(ROLES_HEADER);
const SESSION: HeaderName = HeaderName::from_static(SESSION_ID_HEADER);

/// The client's TCP peer, set per connection (grpc-web requests carry it
/// through the CORS and translation layers as an extension).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub SocketAddr);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) struct Limits {
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub max_message_bytes: usize,
    pub access_log: bool,
}

pub(crate) struct EdgeState {
    pub routes: RouteTable,
    pub clusters: Vec<Arc<Cluster>>,
    pub auth: Authenticator,
    pub by_address: RateLimiter<IpAddr>,
    pub by_user: RateLimiter<Uuid>,
    pub joins_by_address: RateLimiter<IpAddr>,
    pub joins_by_user: RateLimiter<Uuid>,
    /// Events inventory says are sold out (answered here).
    pub sold_out: Arc<SoldOut>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// The edge's own health and reflection.
    pub local: tonic::service::Routes,
    /// More metrics of this process for `/metrics` (in `boxoffice up`, the
    /// services' event consumers), set once after binding.
    pub process_metrics: std::sync::OnceLock<fn() -> String>,
    /// Where admin calls are recorded (none: no audit service is routed,
    /// and admin calls go unrecorded).
    pub audit: Option<AuditTrail>,
}

fn is_local(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// `Display` of an optional value: nothing when absent (access log fields
/// without allocating a string).
struct Shown<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => Ok(()),
        }
    }
}

/// One call's record: becomes the access log line and the metrics when the
/// response ends (or is abandoned).
struct CallRecord {
    state: Arc<EdgeState>,
    start: Instant,
    /// Index of the method's route (and metrics slot).
    route: Option<usize>,
    path: Option<PathAndQuery>,
    peer: Option<SocketAddr>,
    request_id: HeaderValue,
    user: Option<Uuid>,
    upstream: Upstream,
    /// The audit record of an admin call, once written.
    audit: Option<String>,
    /// The edge's span of the call, the parent of the upstream's; ends with
    /// the response ([`Span::none`] unless traces are exported).
    span: Span,
}

/// Where a call went.
enum Upstream {
    /// Nowhere (refused at the edge).
    None,
    Endpoint(Arc<Endpoint>),
    /// Into the cluster's services in this process.
    InProcess,
}

impl Upstream {
    fn name(&self) -> &str {
        match self {
            Self::None => "",
            Self::Endpoint(endpoint) => endpoint.authority.as_str(),
            Self::InProcess => "in-process",
        }
    }
}

impl CallRecord {
    fn finish(self, code: i32) {
        if let (Some(record), Some(audit)) = (self.audit, &self.state.audit) {
            audit.outcome(record, code);
        }
        let duration = self.start.elapsed();
        self.state.metrics.record(self.route, code, duration);
        self.span.record("rpc.grpc.status_code", code);
        if self.state.limits.access_log {
            tracing::info!(
                target: "boxoffice_edge::access",
                method = self.path.as_ref().map(PathAndQuery::path).unwrap_or(""),
                status = crate::metrics::code_name(usize::try_from(code).unwrap_or(2)),
                duration_ms = duration.as_secs_f64() * 1000.0,
                user = %Shown(self.user),
                upstream = self.upstream.name(),
                peer = %Shown(self.peer),
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
fn reject(record: CallRecord, status: Status) -> Response<ResponseBody> {
    let code = status.code() as i32;
    let request_id = record.request_id.clone();
    record.finish(code);
    let mut response = status.into_http::<ResponseBody>();
    response.headers_mut().insert(REQUEST_ID, request_id);
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

/// Whether a header must not travel upstream: HTTP/1 connection headers
/// (HTTP/2 forbids them), the bearer token (services trust metadata, not
/// tokens) and any identity metadata the client forged.
fn must_scrub(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "connection"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "content-length"
            | "proxy-authorization"
            | "keep-alive"
            | "proxy-connection"
    ) || name.starts_with(MESH_HEADER_PREFIX)
}

/// Removes what must not travel upstream (see [`must_scrub`]). One pass
/// over the few names a call carries finds them; only names actually
/// present are looked up to be removed (usually none, or the token).
fn scrub(headers: &mut HeaderMap) {
    let mut doomed = headers.keys().filter(|name| must_scrub(name));
    let Some(first) = doomed.next().cloned() else {
        return;
    };
    // Empty, and so never allocated, unless a client sent several.
    let rest: Vec<HeaderName> = doomed.cloned().collect();
    headers.remove(first);
    for name in rest {
        headers.remove(name);
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    std::str::from_utf8(headers.get(GRPC_STATUS)?.as_bytes())
        .ok()?
        .parse()
        .ok()
}

/// Why the edge answers a call itself instead of an upstream. Each stage of
/// the request path refuses with one of these; [`reject`] counts it, logs
/// the call and answers its status.
enum Rejection {
    /// The request's headers are over the limit (their size).
    HeadersTooLarge(usize),
    NotGrpc,
    /// A method that does not exist, or one only services may call: the
    /// two look exactly alike from outside.
    UnknownMethod,
    /// An `authorization` header that is not `Bearer <token>`.
    MalformedAuthorization,
    BadToken(TokenError),
    LoginRequired,
    AdminRequired,
    RateLimitedAddress {
        wait: Duration,
    },
    RateLimitedUser {
        wait: Duration,
    },
    /// A rush call for an event inventory says is sold out.
    SoldOut,
    /// Too many JoinQueue calls from this address or account.
    JoinsLimited {
        wait: Duration,
    },
    UpstreamOverloaded,
    /// A unary request over the method's limit (the limit, in bytes).
    MessageTooLarge(usize),
    /// A body the grpc-web translation could not decode (grpc-web-text
    /// that is not base64): the caller's mistake, not a broken connection.
    MalformedBody,
    ClientStoppedSending,
    DeadlineExceeded,
    UpstreamUnavailable,
    /// An admin call whose audit record could not be written.
    AuditUnavailable,
}

impl Rejection {
    /// The edge's counters of refused calls.
    fn count(&self, metrics: &Metrics) {
        let counter = match self {
            Self::MalformedAuthorization | Self::BadToken(_) => &metrics.unauthenticated,
            Self::RateLimitedAddress { .. } => &metrics.rate_limited_address,
            Self::RateLimitedUser { .. } => &metrics.rate_limited_user,
            Self::JoinsLimited { .. } => &metrics.rate_limited_joins,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn into_status(self) -> Status {
        match self {
            Self::HeadersTooLarge(bytes) => wire::headers_too_large(bytes),
            Self::NotGrpc => status_with(
                Code::Unimplemented,
                reason::NOT_GRPC,
                "the edge speaks gRPC and grpc-web only",
            ),
            Self::UnknownMethod => status_with(
                Code::Unimplemented,
                reason::UNKNOWN_METHOD,
                "unknown method",
            ),
            Self::MalformedAuthorization => status_with(
                Code::Unauthenticated,
                reason::TOKEN_INVALID,
                "authorization must be 'Bearer <token>'",
            ),
            Self::BadToken(TokenError::Expired) => status_with(
                Code::Unauthenticated,
                reason::TOKEN_EXPIRED,
                "the access token has expired; log in again",
            ),
            Self::BadToken(TokenError::Revoked) => status_with(
                Code::Unauthenticated,
                reason::SESSION_REVOKED,
                "the session of this access token has ended; log in again",
            ),
            Self::BadToken(TokenError::Invalid) => status_with(
                Code::Unauthenticated,
                reason::TOKEN_INVALID,
                "the access token is not valid",
            ),
            Self::LoginRequired => status_with(
                Code::Unauthenticated,
                reason::LOGIN_REQUIRED,
                "this call needs a logged-in user",
            ),
            Self::AdminRequired => status_with(
                Code::PermissionDenied,
                reason::ADMIN_REQUIRED,
                "this call needs the admin role",
            ),
            Self::RateLimitedAddress { wait } => retry_status(
                Code::ResourceExhausted,
                reason::RATE_LIMITED,
                "too many requests from this address",
                wait,
            ),
            Self::RateLimitedUser { wait } => retry_status(
                Code::ResourceExhausted,
                reason::RATE_LIMITED,
                "too many requests for this user",
                wait,
            ),
            Self::SoldOut => status_with(
                Code::FailedPrecondition,
                reason::EVENT_SOLD_OUT,
                "this event is sold out",
            ),
            Self::JoinsLimited { wait } => retry_status(
                Code::ResourceExhausted,
                reason::RATE_LIMITED,
                "too many queue joins; a place once given is kept, so joining again gains nothing",
                wait,
            ),
            Self::UpstreamOverloaded => retry_status(
                Code::ResourceExhausted,
                reason::UPSTREAM_OVERLOADED,
                "the service is at capacity; retry shortly",
                Duration::from_millis(100),
            ),
            Self::MessageTooLarge(limit) => wire::message_too_large(limit),
            Self::MalformedBody => status_with(
                Code::InvalidArgument,
                boxoffice_contracts::codec::MALFORMED_MESSAGE,
                "the request body could not be decoded",
            ),
            Self::ClientStoppedSending => {
                status_with(Code::Cancelled, "CANCELLED", "the client stopped sending")
            }
            Self::DeadlineExceeded => status_with(
                Code::DeadlineExceeded,
                reason::DEADLINE_EXCEEDED,
                "deadline exceeded",
            ),
            Self::UpstreamUnavailable => upstream_unavailable(),
            Self::AuditUnavailable => status_with(
                Code::Unavailable,
                reason::AUDIT_UNAVAILABLE,
                "admin calls are refused while the audit log cannot record them; retry shortly",
            ),
        }
    }
}

/// Serves one call. `B` is the client's request body: hyper's own for
/// plain gRPC, or the grpc-web translation's.
pub(crate) async fn handle<B>(
    state: Arc<EdgeState>,
    peer: Option<SocketAddr>,
    request: Request<B>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    if is_local(request.uri().path()) {
        let request = request.map(tonic::body::Body::new);
        // Behind the wire guard, as every service is: a body the edge's own
        // services cannot decode is the caller's INVALID_ARGUMENT, not
        // tonic's INTERNAL (found by fuzz/grpc_web).
        let local = tower::Layer::layer(&wire::WireGuardLayer, state.local.clone());
        return match local.oneshot(request).await {
            Ok(response) => response.map(ResponseBody::Local),
            Err(never) => match never {},
        };
    }
    let route = state
        .routes
        .lookup(request.uri().path())
        .map(|route| &**route);
    let span = boxoffice_runtime::telemetry::server_span(request.uri().path(), request.headers());
    let mut record = CallRecord {
        state: state.clone(),
        start,
        route: route.map(|route| route.index),
        path: request.uri().path_and_query().cloned(),
        peer,
        request_id: context::request_id(request.headers().get(REQUEST_ID)),
        user: None,
        upstream: Upstream::None,
        audit: None,
        span: span.clone(),
    };
    match proxy(&state, route, request, &mut record)
        .instrument(span)
        .await
    {
        Ok(Proxied {
            head,
            answer,
            slot,
            server_streaming,
        }) => respond(record, head, answer, slot, server_streaming),
        Err(rejection) => {
            rejection.count(&state.metrics);
            reject(record, rejection.into_status())
        }
    }
}

/// An upstream's answer on its way back to the client.
struct Proxied {
    head: http::response::Parts,
    answer: Answer,
    slot: ClusterSlot,
    server_streaming: bool,
}

/// The request path's stages, in order; the first refusal answers the
/// call. `record` learns who called and where the call went.
async fn proxy<B>(
    state: &EdgeState,
    route: Option<&MethodRoute>,
    request: Request<B>,
    record: &mut CallRecord,
) -> Result<Proxied, Rejection>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let route = accept(&request, route)?;
    let caller = authenticate(state, request.headers())?;
    record.user = caller.as_ref().map(|caller| caller.user_id);
    authorize(route.access, caller.as_deref())?;
    let slot = admit(state, route, record.peer, caller.as_deref(), record.start)?;
    if route.audited
        && let (Some(audit), Some(caller)) = (&state.audit, caller.as_deref())
    {
        record.audit = Some(write_ahead(audit, route, caller, &record.request_id).await?);
    }
    let deadline = deadline(state, route, request.headers(), record.start);
    let (mut parts, body) = request.into_parts();
    set_upstream_headers(&mut parts.headers, caller.as_deref(), record, deadline);
    let (head, answer) = match forward_within(state, route, parts, body, deadline).await? {
        Forwarded::Network(response, outstanding) => {
            record.upstream = Upstream::Endpoint(outstanding.endpoint().clone());
            let (head, stream) = response.into_parts();
            let answer = Answer::Network {
                stream,
                data_done: false,
                _outstanding: outstanding,
            };
            (head, answer)
        }
        Forwarded::InProcess(response) => {
            record.upstream = Upstream::InProcess;
            let (head, body) = response.into_parts();
            (head, Answer::InProcess(body))
        }
    };
    Ok(Proxied {
        head,
        answer,
        slot,
        server_streaming: route.server_streaming,
    })
}

/// What the edge takes at all: headers within the limit (oversized headers
/// fail this request alone; the HTTP/2 layer lets them through so that the
/// connection's other calls carry on), gRPC, and a method outsiders may
/// call.
fn accept<'r, B>(
    request: &Request<B>,
    route: Option<&'r MethodRoute>,
) -> Result<&'r MethodRoute, Rejection> {
    let header_bytes = header_list_bytes(request.uri(), request.headers());
    if header_bytes > MAX_REQUEST_HEADER_BYTES {
        return Err(Rejection::HeadersTooLarge(header_bytes));
    }
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    if !is_grpc {
        return Err(Rejection::NotGrpc);
    }
    match route {
        Some(route) if route.access != Access::Internal => Ok(route),
        _ => Err(Rejection::UnknownMethod),
    }
}

/// The caller, if a token was sent. A token that is sent must be valid,
/// even on public methods, so a client never silently runs as anonymous.
fn authenticate(
    state: &EdgeState,
    headers: &HeaderMap,
) -> Result<Option<Arc<Identity>>, Rejection> {
    match bearer_token(headers) {
        None => Ok(None),
        Some(Err(())) => Err(Rejection::MalformedAuthorization),
        Some(Ok(token)) => state
            .auth
            .authenticate(token, unix_now())
            .map(Some)
            .map_err(Rejection::BadToken),
    }
}

/// Whether this caller may call a method of this access class.
fn authorize(access: Access, caller: Option<&Identity>) -> Result<(), Rejection> {
    match (access, caller) {
        (Access::User | Access::Admin, None) => Err(Rejection::LoginRequired),
        (Access::Admin, Some(caller)) if !caller.is_admin => Err(Rejection::AdminRequired),
        _ => Ok(()),
    }
}

/// Records an admin call before it is forwarded; one that cannot be
/// recorded is refused (see `audit`).
async fn write_ahead(
    audit: &AuditTrail,
    route: &MethodRoute,
    caller: &Identity,
    request_id: &HeaderValue,
) -> Result<String, Rejection> {
    let action = Action {
        actor: caller.user_id,
        path: route.path.clone(),
        request_id: request_id.to_str().unwrap_or("").to_owned(),
    };
    audit.record(action).await.map_err(|error| {
        tracing::error!(error = format!("{error:#}"), path = %route.path, "an admin call could not be recorded; refused");
        Rejection::AuditUnavailable
    })
}

/// The waiting room's join, limited on its own at the edge.
const JOIN_QUEUE_PATH: &str = "/boxoffice.inventory.v1.WaitingRoomService/JoinQueue";

/// Rate limits (per address always, per user when there is one; JoinQueue
/// also has its own, tighter ones), then a place under the upstream
/// cluster's concurrency cap.
fn admit(
    state: &EdgeState,
    route: &MethodRoute,
    peer: Option<SocketAddr>,
    caller: Option<&Identity>,
    now: Instant,
) -> Result<ClusterSlot, Rejection> {
    if let Some(peer) = peer
        && let Err(wait) = state.by_address.take(&peer.ip(), now)
    {
        return Err(Rejection::RateLimitedAddress { wait });
    }
    if let Some(caller) = caller
        && let Err(wait) = state.by_user.take(&caller.user_id, now)
    {
        return Err(Rejection::RateLimitedUser { wait });
    }
    if route.path == JOIN_QUEUE_PATH {
        if let Some(peer) = peer
            && let Err(wait) = state.joins_by_address.take(&peer.ip(), now)
        {
            return Err(Rejection::JoinsLimited { wait });
        }
        if let Some(caller) = caller
            && let Err(wait) = state.joins_by_user.take(&caller.user_id, now)
        {
            return Err(Rejection::JoinsLimited { wait });
        }
    }
    state.clusters[route.cluster]
        .try_acquire()
        .ok_or(Rejection::UpstreamOverloaded)
}

/// The client's deadline, else the default for unary calls; never past the
/// maximum. Streams without a deadline may stay open indefinitely.
fn deadline(
    state: &EdgeState,
    route: &MethodRoute,
    headers: &HeaderMap,
    start: Instant,
) -> Option<Instant> {
    let asked = headers
        .get(GRPC_TIMEOUT)
        .and_then(context::parse_grpc_timeout);
    let timeout = match (asked, route.server_streaming || route.client_streaming) {
        (Some(asked), _) => Some(asked.min(state.limits.max_timeout)),
        (None, false) => Some(state.limits.default_timeout),
        (None, true) => None,
    };
    timeout.map(|timeout| start + timeout)
}

/// The request's own headers made fit to travel upstream: scrubbed, with
/// the caller's identity, the trace and request ids and what is left of
/// the deadline.
fn set_upstream_headers(
    headers: &mut HeaderMap,
    caller: Option<&Identity>,
    record: &CallRecord,
    deadline: Option<Instant>,
) {
    scrub(headers);
    if let Some(caller) = caller {
        if let Some(value) = &caller.user_header {
            headers.insert(USER_ID, value.clone());
        }
        if let Some(value) = &caller.roles_header {
            headers.insert(ROLES, value.clone());
        }
        if let Some(value) = &caller.session_header {
            headers.insert(SESSION, value.clone());
        }
    }
    // The edge's own span is the upstream's parent when traces are
    // exported; otherwise the caller's trace goes on with a new span id.
    if record.span.is_none() {
        let traceparent = context::traceparent(headers.get(TRACEPARENT));
        headers.insert(TRACEPARENT, traceparent);
    } else {
        boxoffice_runtime::telemetry::inject(&record.span, headers);
    }
    headers.insert(REQUEST_ID, record.request_id.clone());
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(deadline) = deadline {
        headers.insert(
            GRPC_TIMEOUT,
            context::format_grpc_timeout(deadline.saturating_duration_since(Instant::now())),
        );
    }
}

/// Reads a unary request whole and forwards the call, both within the
/// deadline (one timer for both).
///
/// Unary requests are read whole (bounded by the message limit and the
/// deadline), which checks their size and makes them safe to resend. A
/// unary request is almost always one DATA frame already received, so this
/// takes that frame's bytes as they are.
async fn forward_within<B>(
    state: &EdgeState,
    route: &MethodRoute,
    parts: http::request::Parts,
    body: B,
    deadline: Option<Instant>,
) -> Result<Forwarded, Rejection>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let cluster = &state.clusters[route.cluster];
    let exchange = async {
        let body = if route.client_streaming {
            RequestBody::Streaming(Some(body))
        } else {
            // The service's own limit (read from the same constant it
            // decodes with), or the edge's if that is lower; 5 bytes of
            // gRPC frame header come on top.
            let limit = route.max_request_bytes.min(state.limits.max_message_bytes);
            match read_whole(body, limit + 5).await {
                Ok(bytes) if state.sold_out.answers(&route.path, &bytes) => {
                    state
                        .metrics
                        .sold_out_answers
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Rejection::SoldOut);
                }
                Ok(bytes) => RequestBody::Buffered(bytes),
                Err(ReadError::TooLarge) => return Err(Rejection::MessageTooLarge(limit)),
                Err(ReadError::Malformed) => return Err(Rejection::MalformedBody),
                Err(ReadError::Broken) => return Err(Rejection::ClientStoppedSending),
            }
        };
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return Err(Rejection::DeadlineExceeded);
        }
        match &cluster.in_process {
            Some(services) => forward_in_process(services, parts, body).await,
            None => forward(state, cluster, parts, body).await,
        }
    };
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), exchange)
            .await
            .unwrap_or(Err(Rejection::DeadlineExceeded)),
        None => exchange.await,
    }
}

/// The upstream's answer as the client's response, observed until it ends.
fn respond(
    record: CallRecord,
    mut head: http::response::Parts,
    answer: Answer,
    slot: ClusterSlot,
    server_streaming: bool,
) -> Response<ResponseBody> {
    head.headers.insert(REQUEST_ID, record.request_id.clone());
    let header_code = grpc_status(&head.headers);
    // A stream holds its concurrency slot only until it is established:
    // long-lived watches must not starve short calls of the cap.
    let slot = if server_streaming { None } else { Some(slot) };
    // A trailers-only answer (every error) is complete already: HTTP/2 may
    // never poll its empty body, so record it now.
    let record = match header_code {
        Some(code) if answer.is_end_stream() => {
            record.finish(code);
            None
        }
        _ => Some(record),
    };
    let body = ObservedBody {
        inner: answer,
        finished: false,
        record,
        header_code,
        _slot: slot,
    };
    Response::from_parts(head, ResponseBody::Proxied(body))
}

enum ReadError {
    TooLarge,
    /// The body's own translation failed: the grpc-web layer answers a
    /// `Status` for what it cannot decode (grpc-web-text that is not
    /// base64), where a broken connection is a transport error.
    Malformed,
    Broken,
}

/// Reads a whole request body of at most `limit` bytes. One frame (the
/// usual unary request) is returned as is, without copying.
async fn read_whole<B>(mut body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut whole = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        if body.is_end_stream() {
            break;
        }
        let frame = match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break,
            Some(Err(error)) => {
                let error: BoxError = error.into();
                return Err(if error.downcast_ref::<Status>().is_some() {
                    ReadError::Malformed
                } else {
                    ReadError::Broken
                });
            }
            Some(Ok(frame)) => frame,
        };
        // Request trailers mean nothing to gRPC; only data counts.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        if let Some(joined) = &mut joined {
            joined.extend_from_slice(&data);
        } else if whole.is_empty() {
            whole = data;
        } else {
            let mut buffer = BytesMut::with_capacity(total);
            buffer.extend_from_slice(&whole);
            buffer.extend_from_slice(&data);
            joined = Some(buffer);
        }
    }
    Ok(joined.map_or(whole, BytesMut::freeze))
}

enum RequestBody<B> {
    Buffered(Bytes),
    Streaming(Option<B>),
}

/// An upstream's answer, before its body is streamed back.
enum Forwarded {
    Network(Response<h2::RecvStream>, Outstanding),
    InProcess(Response<tonic::body::Body>),
}

/// Calls the cluster's services in this process. What reaches them is what
/// an endpoint would have received (the scrubbed headers, identity,
/// deadline), only not over a socket.
async fn forward_in_process<B>(
    services: &Transport,
    parts: http::request::Parts,
    body: RequestBody<B>,
) -> Result<Forwarded, Rejection>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let body = match body {
        RequestBody::Buffered(bytes) => tonic::body::Body::new(http_body_util::Full::new(bytes)),
        RequestBody::Streaming(Some(streaming)) => tonic::body::Body::new(streaming),
        RequestBody::Streaming(None) => return Err(Rejection::UpstreamUnavailable),
    };
    match services
        .clone()
        .oneshot(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => Ok(Forwarded::InProcess(response)),
        Err(error) => {
            tracing::debug!(%error, "in-process call failed");
            Err(Rejection::UpstreamUnavailable)
        }
    }
}

fn upstream_unavailable() -> Status {
    status_with(
        Code::Unavailable,
        reason::UPSTREAM_UNAVAILABLE,
        "the service is unavailable; retry shortly",
    )
}

/// Whether an upstream stream error proves the request was never processed:
/// refused by HTTP/2, or above the last stream a GOAWAY said it would serve.
fn never_processed(error: &h2::Error) -> bool {
    error.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR))
}

/// Sends to a balanced endpoint; resends only what provably never reached
/// an application (never sent, refused by HTTP/2, or no connection).
// A little over 80 lines: the retry loop, whose every `continue` says why
// an attempt may be repeated, reads best in one piece.
async fn forward<B>(
    state: &EdgeState,
    cluster: &Cluster,
    mut parts: http::request::Parts,
    mut body: RequestBody<B>,
) -> Result<Forwarded, Rejection>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // One snapshot of the instances for every attempt (the exclusions are
    // indexes into it).
    let endpoints = cluster.endpoints();
    // At most one endpoint per attempt is excluded; no allocation.
    let mut excluded = [usize::MAX; MAX_ATTEMPTS];
    let mut excluded_count = 0;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            state.metrics.retries.fetch_add(1, Ordering::Relaxed);
        }
        let Some(index) = cluster.pick(&endpoints, &excluded[..excluded_count]) else {
            return Err(Rejection::UpstreamUnavailable);
        };
        let endpoint = &endpoints[index];
        let (send, outstanding) = match endpoint.connection().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(endpoint = %endpoint.authority, %error, "cannot connect upstream");
                endpoint.report_transport_failure();
                excluded[excluded_count] = index;
                excluded_count += 1;
                continue;
            }
        };
        // A connection that has failed or been told to go away refuses new
        // streams before anything is sent: take it out and try again.
        let mut send = match send.ready().await {
            Ok(send) => send,
            Err(error) => {
                tracing::debug!(endpoint = %endpoint.authority, %error, "upstream connection not ready");
                outstanding.retire_connection();
                continue;
            }
        };
        let request = upstream_request(
            &mut parts,
            endpoint,
            &path_and_query,
            attempt + 1 == MAX_ATTEMPTS,
        )?;
        let empty = matches!(&body, RequestBody::Buffered(bytes) if bytes.is_empty());
        let (response, stream) = match send.send_request(request, empty) {
            Ok(sent) => sent,
            Err(error) => {
                tracing::debug!(endpoint = %endpoint.authority, %error, "upstream refused a new stream");
                outstanding.retire_connection();
                continue;
            }
        };
        // Held until the answer comes, as the stream's other half is.
        let _stream = send_body(&mut body, stream, empty)?;
        match response.await {
            Ok(response) => return Ok(Forwarded::Network(response, outstanding)),
            Err(error) => {
                tracing::debug!(endpoint = %endpoint.authority, %error, "upstream request failed");
                let resendable = matches!(body, RequestBody::Buffered(_));
                if resendable && never_processed(&error) {
                    if error.is_go_away() {
                        // Shutting down gracefully: not a failure.
                        outstanding.retire_connection();
                    } else {
                        endpoint.report_transport_failure();
                    }
                    excluded[excluded_count] = index;
                    excluded_count += 1;
                    continue;
                }
                endpoint.report_transport_failure();
                return Err(Rejection::UpstreamUnavailable);
            }
        }
    }
    Err(Rejection::UpstreamUnavailable)
}

/// One attempt's request head for `endpoint`. The last attempt may give
/// the headers away; earlier ones keep them for a resend.
fn upstream_request(
    parts: &mut http::request::Parts,
    endpoint: &Endpoint,
    path_and_query: &PathAndQuery,
    last_attempt: bool,
) -> Result<Request<()>, Rejection> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(endpoint.uri_authority.clone());
    uri.path_and_query = Some(path_and_query.clone());
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = Uri::from_parts(uri).map_err(|_| Rejection::UpstreamUnavailable)?;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = if last_attempt {
        std::mem::take(&mut parts.headers)
    } else {
        parts.headers.clone()
    };
    Ok(request)
}

/// Sends the body on the stream just opened: a buffered one at once (it
/// stays for a resend), a streaming one from a task of its own. Answers
/// the stream when the caller is to keep it.
fn send_body<B>(
    body: &mut RequestBody<B>,
    mut stream: h2::SendStream<Bytes>,
    empty: bool,
) -> Result<Option<h2::SendStream<Bytes>>, Rejection>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    match body {
        RequestBody::Buffered(bytes) => {
            if !empty {
                // Errors surface on the response.
                let _ = stream.send_data(bytes.clone(), true);
            }
            Ok(Some(stream))
        }
        RequestBody::Streaming(streaming) => match streaming.take() {
            Some(streaming) => {
                tokio::spawn(pipe_request_body(streaming, stream));
                Ok(None)
            }
            None => Err(Rejection::UpstreamUnavailable),
        },
    }
}

/// Streams a client-streaming call's request body upstream, within the
/// stream's flow-control window, until it ends or either side gives up.
async fn pipe_request_body<B>(mut body: B, mut stream: h2::SendStream<Bytes>)
where
    B: Body<Data = Bytes> + Unpin,
{
    loop {
        let frame = poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body)
                .poll_frame(cx)
                .map(|frame| Some(frame.map(|frame| frame.map_err(|_| ()))))
        })
        .await;
        let frame = match frame {
            // The upstream reset the stream: stop reading.
            None => return,
            Some(None) => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Some(Err(_))) => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    stream.reserve_capacity(data.len());
                    match poll_fn(|cx| stream.poll_capacity(cx)).await {
                        Some(Ok(0)) => {}
                        Some(Ok(capacity)) => {
                            let chunk = data.split_to(capacity.min(data.len()));
                            if stream.send_data(chunk, false).is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                    return;
                }
            }
        }
    }
}

/// What the edge answers with.
// The proxied variant is the one that matters and it lives inline in
// hyper's per-stream task; boxing it would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
#[derive(Default)]
pub(crate) enum ResponseBody {
    /// Nothing: trailers-only answers (every rejection).
    #[default]
    Empty,
    /// An upstream's answer, streamed through.
    Proxied(ObservedBody),
    /// The edge's own services, and anything through the grpc-web layers.
    Local(tonic::body::Body),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Proxied(body) => body.poll_frame(cx).map(|frame| frame.map(Ok)),
            Self::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Proxied(body) => body.is_end_stream(),
            Self::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Proxied(_) => SizeHint::default(),
            Self::Local(body) => body.size_hint(),
        }
    }
}

/// The upstream's response body on its way to the client: frames pass
/// through untouched (flow-control credit is returned upstream as each one
/// is handed on, so a slow client slows its upstream stream, not the
/// edge's memory); watches for the status in the trailers, turns an
/// upstream that dies mid-stream into a clean `UNAVAILABLE` instead of a
/// reset, and finishes the call record when the body ends or the client
/// goes away.
pub(crate) struct ObservedBody {
    inner: Answer,
    /// Set once the last frame (trailers, or the closing `UNAVAILABLE`) went out.
    finished: bool,
    record: Option<CallRecord>,
    header_code: Option<i32>,
    _slot: Option<ClusterSlot>,
}

/// The body an upstream answers with.
enum Answer {
    Network {
        stream: h2::RecvStream,
        data_done: bool,
        _outstanding: Outstanding,
    },
    InProcess(tonic::body::Body),
}

impl Answer {
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Network { stream, .. } => stream.is_end_stream(),
            Self::InProcess(body) => body.is_end_stream(),
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(Code::Cancelled as i32);
        }
    }
}

impl ObservedBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<Bytes>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let trailers = match &mut self.inner {
            Answer::Network {
                stream, data_done, ..
            } => {
                if !*data_done {
                    match stream.poll_data(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(data))) => {
                            let _ = stream.flow_control().release_capacity(data.len());
                            return Poll::Ready(Some(Frame::data(data)));
                        }
                        Poll::Ready(Some(Err(error))) => {
                            tracing::debug!(%error, "upstream response broke off");
                            return Poll::Ready(Some(self.break_off()));
                        }
                        Poll::Ready(None) => *data_done = true,
                    }
                }
                match stream.poll_trailers(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(trailers)) => trailers,
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "upstream response broke off");
                        return Poll::Ready(Some(self.break_off()));
                    }
                }
            }
            Answer::InProcess(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                    Ok(trailers) => Some(trailers),
                    Err(frame) => return Poll::Ready(Some(frame)),
                },
                Poll::Ready(Some(Err(status))) => {
                    tracing::debug!(%status, "in-process response broke off");
                    return Poll::Ready(Some(self.break_off()));
                }
                Poll::Ready(None) => None,
            },
        };
        let code = match &trailers {
            Some(trailers) => grpc_status(trailers).unwrap_or(Code::Unknown as i32),
            None => self.header_code.unwrap_or(Code::Unknown as i32),
        };
        if let Some(record) = self.record.take() {
            record.finish(code);
        }
        self.finished = true;
        Poll::Ready(trailers.map(Frame::trailers))
    }

    /// The upstream's answer broke off: the client gets `UNAVAILABLE`
    /// trailers.
    fn break_off(&mut self) -> Frame<Bytes> {
        if let Some(record) = self.record.take() {
            if let Upstream::Endpoint(endpoint) = &record.upstream {
                endpoint.report_transport_failure();
            }
            record.finish(Code::Unavailable as i32);
        }
        self.finished = true;
        let mut trailers = HeaderMap::new();
        if upstream_unavailable().add_header(&mut trailers).is_err() {
            trailers.insert(GRPC_STATUS, HeaderValue::from_static("14"));
        }
        Frame::trailers(trailers)
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }
}

/// Whether a request can take the direct path (no CORS, no grpc-web
/// translation): plain gRPC over HTTP/2 from a non-browser client.
pub(crate) fn is_plain_grpc<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_2
        && request.method() == Method::POST
        && !request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| {
                let value = value.as_bytes();
                value.starts_with(b"application/grpc")
                    && !value.starts_with(b"application/grpc-web")
            })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

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
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-request-id", HeaderValue::from_static("keep-me"));
        scrub(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-request-id"));

        // Just the token (an ordinary authenticated call), and nothing.
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        scrub(&mut headers);
        assert_eq!(headers.len(), 2);
        assert!(!headers.contains_key(header::AUTHORIZATION));
        scrub(&mut headers);
        assert_eq!(headers.len(), 2);
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

    #[test]
    fn only_plain_grpc_over_http2_skips_the_browser_layers() {
        let request = |version, content_type: &str, origin: Option<&str>| {
            let mut builder = Request::post("/a.B/C")
                .version(version)
                .header(header::CONTENT_TYPE, content_type);
            if let Some(origin) = origin {
                builder = builder.header(header::ORIGIN, origin);
            }
            builder.body(()).unwrap()
        };
        assert!(is_plain_grpc(&request(
            Version::HTTP_2,
            "application/grpc",
            None
        )));
        assert!(is_plain_grpc(&request(
            Version::HTTP_2,
            "application/grpc+proto",
            None
        )));
        assert!(!is_plain_grpc(&request(
            Version::HTTP_2,
            "application/grpc-web",
            None
        )));
        assert!(!is_plain_grpc(&request(
            Version::HTTP_2,
            "application/grpc-web-text+proto",
            None
        )));
        assert!(!is_plain_grpc(&request(
            Version::HTTP_11,
            "application/grpc",
            None
        )));
        assert!(!is_plain_grpc(&request(
            Version::HTTP_2,
            "application/grpc",
            Some("http://localhost:3000")
        )));
        assert!(!is_plain_grpc(&request(
            Version::HTTP_2,
            "application/json",
            None
        )));
    }

    #[tokio::test]
    async fn a_unary_body_is_read_whole_and_bounded() {
        let one = http_body_util::Full::new(Bytes::from_static(b"hello"));
        assert_eq!(
            read_whole(one, 16).await.ok(),
            Some(Bytes::from_static(b"hello"))
        );
        let chunks =
            http_body_util::StreamBody::new(futures::stream::iter(["ab", "cd", "ef"].map(
                |chunk| Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk.as_bytes()))),
            )));
        assert_eq!(
            read_whole(chunks, 16).await.ok(),
            Some(Bytes::from_static(b"abcdef"))
        );
        let big = http_body_util::Full::new(Bytes::from(vec![0u8; 17]));
        assert!(matches!(
            read_whole(big, 16).await,
            Err(ReadError::TooLarge)
        ));
    }

    /// The edge with no routes, only its own health and reflection.
    fn bare_state() -> Arc<EdgeState> {
        let routes = RouteTable::compile(
            &[],
            &[boxoffice_contracts::FILE_DESCRIPTOR_SET],
            &HashMap::new(),
        )
        .unwrap();
        let tokens = boxoffice_accounts::TokenConfig::from_vars(
            &Default::default(),
            boxoffice_accounts::config::MissingSecret::GenerateEphemeral,
        )
        .unwrap();
        let off = crate::config::RateLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        let (_, health) = tonic_health::server::health_reporter();
        Arc::new(EdgeState {
            metrics: Metrics::new(&routes),
            routes,
            clusters: Vec::new(),
            auth: Authenticator::new(boxoffice_accounts::token::TokenVerifier::new(&tokens)),
            by_address: RateLimiter::new(off),
            by_user: RateLimiter::new(off),
            joins_by_address: RateLimiter::new(off),
            joins_by_user: RateLimiter::new(off),
            sold_out: Arc::default(),
            limits: Limits {
                default_timeout: Duration::from_secs(10),
                max_timeout: Duration::from_secs(10),
                max_message_bytes: 4 * 1024 * 1024,
                access_log: false,
            },
            local: tonic::service::Routes::new(health).prepare(),
            process_metrics: std::sync::OnceLock::new(),
            audit: None,
        })
    }

    /// Found by `fuzz/grpc_web`: the edge's own services answered a body
    /// they could not decode `INTERNAL`, where every service answers
    /// `INVALID_ARGUMENT` with `MALFORMED_MESSAGE`.
    #[tokio::test]
    async fn the_edges_own_services_refuse_undecodable_bodies_as_invalid_argument() {
        for body in [
            // A compression flag of 65.
            &b"A\0\0\0\0"[..],
            // A message that is not protobuf (a varint that never ends).
            &b"\0\0\0\0\x02\x08\xff"[..],
            // A frame cut short.
            &b"\0\0\0\0\x09\x0a"[..],
        ] {
            let request = Request::builder()
                .method(Method::POST)
                .uri("/grpc.health.v1.Health/Check")
                .header(header::CONTENT_TYPE, "application/grpc")
                .body(http_body_util::Full::new(Bytes::from_static(body)))
                .unwrap();
            let response = handle(bare_state(), None, request).await;
            let status =
                Status::from_header_map(response.headers()).expect("a trailers-only answer");
            assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
            assert_eq!(
                status_details::reason_of(&status).as_deref(),
                Some(boxoffice_contracts::codec::MALFORMED_MESSAGE),
                "{body:?}"
            );
        }
    }
}
