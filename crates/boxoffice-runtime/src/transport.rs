//! How one service reaches another: a generated gRPC client over a
//! [`Transport`]. Across processes the transport is a tonic [`Channel`].
//! When the callee runs in the same process (`boxoffice up`, `serve` with
//! several services, the load generator), it is the callee's own tonic
//! service, called directly: the same protobuf messages, metadata (the
//! caller's identity) and status codes, without HTTP/2 framing, a loopback
//! socket, and the wake-ups on both of its ends. Under `boxoffice up` a
//! confirmation's CommitHold takes this path; the caller's hop to checkout
//! (through the edge) stays on the network.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::transport::Channel;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt as _};

/// What a generated client (`FooServiceClient<Transport>`) sends through.
#[derive(Clone)]
pub struct Transport(
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>,
);

type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Body>, TransportError>> + Send>>;

/// Why a call did not reach the callee or come back (a connection that
/// failed, a call that took too long). The cause stays reachable through
/// `source()`, where tonic looks to turn it into a status.
#[derive(Debug)]
pub struct TransportError(BoxError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transport: {}", self.0)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = TransportError;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.0.call(request)
    }
}

/// Calls made in-process end after this long, as the channel's calls do
/// through their `grpc-timeout`, so a stuck callee cannot hold a caller.
pub const IN_PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// A transport over the network. Every call carries the caller's trace
/// (`traceparent`, when traces are exported; see [`crate::telemetry`]).
pub fn over_channel(channel: Channel) -> Transport {
    Transport(BoxCloneSyncService::new(
        crate::telemetry::TracedClient::new(channel).map_err(|error| TransportError(error.into())),
    ))
}

/// A transport straight into a tonic service of this process (a single
/// generated server, or [`tonic::service::Routes`] holding several).
pub fn in_process<S>(service: S) -> Transport
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Transport(BoxCloneSyncService::new(
        ServiceBuilder::new()
            .timeout(IN_PROCESS_TIMEOUT)
            .service(service)
            .map_err(TransportError),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    #[tokio::test]
    async fn an_in_process_call_answers_what_the_service_answers() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("boxoffice.Test", tonic_health::ServingStatus::Serving)
            .await;
        let mut client = HealthClient::new(in_process(service));
        let answer = client
            .check(HealthCheckRequest {
                service: "boxoffice.Test".into(),
            })
            .await
            .expect("a known service")
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32);
        let refused = client
            .check(HealthCheckRequest {
                service: "boxoffice.Nobody".into(),
            })
            .await
            .expect_err("an unknown service");
        assert_eq!(refused.code(), tonic::Code::NotFound);
    }
}
