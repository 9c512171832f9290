//! The admin listener of a `boxoffice serve <service>` process (its own
//! port, never the public one): `GET /metrics` in the Prometheus text
//! format and `GET /ready`, 200 while the process serves and 503 before and
//! once it drains, for a Kubernetes readiness probe.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Where the admin listener binds; unset, there is none.
pub const ENV_ADMIN_LISTEN: &str = "BOXOFFICE_ADMIN_LISTEN";

/// Renders the whole `/metrics` page.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics` and `/ready` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    render: Render,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => return,
        };
        let (render, ready) = (render.clone(), ready.clone());
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (render, ready) = (render.clone(), ready.clone());
            async move {
                let response = match (request.method(), request.uri().path()) {
                    (&Method::GET, "/metrics") => Response::builder()
                        .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                        .body(http_body_util::Full::new(Bytes::from(render()))),
                    (&Method::GET, "/ready") if ready.load(Ordering::Relaxed) => {
                        Response::builder()
                            .body(http_body_util::Full::new(Bytes::from_static(b"ok\n")))
                    }
                    (&Method::GET, "/ready") => Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(http_body_util::Full::new(Bytes::from_static(
                            b"not serving\n",
                        ))),
                    _ => Response::builder().status(StatusCode::NOT_FOUND).body(
                        http_body_util::Full::new(Bytes::from_static(b"not found\n")),
                    ),
                };
                Ok::<_, Infallible>(
                    response
                        .unwrap_or_else(|_| Response::new(http_body_util::Full::new(Bytes::new()))),
                )
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
