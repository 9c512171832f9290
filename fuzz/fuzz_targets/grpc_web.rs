//! The edge's grpc-web translation, over a real socket: a running edge
//! (`Edge::bind_in_process`, the CORS → grpc-web → proxy stack a browser
//! reaches over HTTP/1.1) routes `boxoffice.testing.v1.EchoService` to an
//! echo service in the process, behind the same server stack the services
//! run in. The fuzzer writes the request body (binary or base64 text
//! grpc-web) and picks the content type, path and a few headers.
//!
//! Checked: no panic, in the edge or the translation; every answer is a
//! well-formed grpc-web response (HTTP 200, complete frames, at most one
//! trailers frame and last, a `grpc-status` in the headers or the trailers);
//! a body that does not decode is the caller's mistake, never `INTERNAL` or
//! `UNKNOWN`; a well-formed echo request is answered `OK` with exactly what
//! it sent, in one message, in the request's encoding.
//!
//! Input: a flags byte, then the body's bytes.
//! - bits 0–1: `application/grpc-web`, `…+proto`, `…-text`, `…-text+proto`
//! - bit 2: frame the bytes as one uncompressed message (else they are sent as they are)
//! - bit 3: base64 the body (what a text client does)
//! - bits 4–5: Echo, Echo, grpc.health.v1 Check (the edge's own), an unknown method
//! - bit 6: send an `Origin` (a browser's CORS request)
//! - bit 7: claim `grpc-encoding: gzip`
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use boxoffice_contracts::testing::v1::echo_service_server::{EchoService, EchoServiceServer};
use boxoffice_contracts::testing::v1::{EchoRequest, EchoResponse};
use boxoffice_edge::config::{ClusterConfig, RateLimit, RouteConfig};
use boxoffice_edge::routes::Access;
use boxoffice_edge::{Edge, EdgeConfig};
use boxoffice_fuzz::frame;
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::server::GrpcServer;
use bytes::{Buf as _, Bytes};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tonic::Code;

const ORIGIN: &str = "http://fuzz.test";
const ECHO: &str = "/boxoffice.testing.v1.EchoService/Echo";
const HEALTH: &str = "/grpc.health.v1.Health/Check";
const UNKNOWN: &str = "/boxoffice.testing.v1.EchoService/Shout";
const CONTENT_TYPES: [&str; 4] = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
];

#[derive(Clone, Copy)]
struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(EchoResponse {
            message: request.into_inner().message,
        }))
    }
}

struct World {
    runtime: tokio::runtime::Runtime,
    address: std::net::SocketAddr,
    client: Mutex<Option<SendRequest<Full<Bytes>>>>,
    _shutdown: Shutdown,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shutdown = Shutdown::new();
        let address = runtime.block_on(async {
            let mut services = GrpcServer::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
            services.add_service(EchoServiceServer::new(Echo));
            let mut config = EdgeConfig::defaults(([127, 0, 0, 1], 0).into());
            config.admin_listen = None;
            config.access_log = false;
            config.cors_origins = vec![ORIGIN.to_owned()];
            let off = RateLimit {
                per_second: 0.0,
                burst: 0.0,
            };
            config.rate_per_address = off;
            config.rate_per_user = off;
            config.clusters = BTreeMap::from([(
                "echo".to_owned(),
                ClusterConfig {
                    endpoints: Vec::new(),
                    health_service: String::new(),
                    max_concurrent_requests: None,
                },
            )]);
            config.routes = vec![RouteConfig {
                service: "boxoffice.testing.v1.EchoService".to_owned(),
                cluster: "echo".to_owned(),
                default_access: Access::Public,
                methods: BTreeMap::new(),
            }];
            let tokens = boxoffice_accounts::TokenConfig::from_vars(
                &Default::default(),
                boxoffice_accounts::config::MissingSecret::GenerateEphemeral,
            )
            .unwrap();
            let edge = Edge::bind_in_process(config, &tokens, services.in_process())
                .await
                .unwrap();
            let address = edge.local_addr();
            tokio::spawn(edge.run_until_stopped(shutdown.clone()));
            address
        });
        World {
            runtime,
            address,
            client: Mutex::new(None),
            _shutdown: shutdown,
        }
    })
}

async fn connect(address: std::net::SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// A grpc-web-text body: base64 in independent 4-character quanta (each
/// chunk the edge writes is padded on its own).
fn unbase64(text: &[u8]) -> Vec<u8> {
    assert!(
        text.len() % 4 == 0,
        "a grpc-web-text answer cut mid-quantum"
    );
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for quantum in text.chunks(4) {
        out.extend(
            STANDARD
                .decode(quantum)
                .unwrap_or_else(|error| panic!("an answer that is not base64: {error}")),
        );
    }
    out
}

struct Answer {
    messages: Vec<Bytes>,
    code: Code,
    message: String,
}

/// Reads a grpc-web answer, asserting it is well formed.
fn read_answer(headers: &http::HeaderMap, mut body: Bytes) -> Answer {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("an answer without a content type: {headers:?}"));
    assert!(
        content_type.starts_with("application/grpc-web"),
        "answered {content_type}"
    );
    if content_type.starts_with("application/grpc-web-text") {
        body = Bytes::from(unbase64(&body));
    }
    let mut messages = Vec::new();
    let mut trailers = None;
    while body.has_remaining() {
        assert!(trailers.is_none(), "a frame after the trailers");
        assert!(body.len() >= 5, "a frame header cut short");
        let flag = body.get_u8();
        let length = body.get_u32() as usize;
        assert!(body.len() >= length, "a frame cut short");
        let payload = body.split_to(length);
        match flag {
            0x00 => messages.push(payload),
            0x80 => trailers = Some(payload),
            other => panic!("a frame flagged {other:#x}"),
        }
    }
    let mut fields = http::HeaderMap::new();
    for (name, value) in headers {
        if name.as_str().starts_with("grpc-") {
            fields.insert(name.clone(), value.clone());
        }
    }
    if let Some(trailers) = trailers {
        let text = std::str::from_utf8(&trailers).expect("trailers are text");
        for line in text.split("\r\n").filter(|line| !line.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("a trailer line without a colon: {line:?}"));
            fields.insert(
                http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                http::HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
    }
    let status = tonic::Status::from_header_map(&fields)
        .unwrap_or_else(|| panic!("an answer without a grpc-status: {fields:?}"));
    Answer {
        messages,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let world = world();
    let content_type = CONTENT_TYPES[usize::from(flags & 0x03)];
    let text = flags & 0x02 != 0;
    let framed = flags & 0x04 != 0;
    let encode = flags & 0x08 != 0;
    let path = [ECHO, ECHO, HEALTH, UNKNOWN][usize::from((flags >> 4) & 0x03)];
    let origin = flags & 0x40 != 0;
    let gzip = flags & 0x80 != 0;

    let mut body = if framed {
        frame(0, rest)
    } else {
        Bytes::copy_from_slice(rest)
    };
    if encode {
        body = Bytes::from(STANDARD.encode(&body));
    }
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::HOST, world.address.to_string())
        .header(http::header::CONTENT_TYPE, content_type)
        .header("x-grpc-web", "1")
        .header(http::header::ACCEPT, content_type);
    if origin {
        request = request.header(http::header::ORIGIN, ORIGIN);
    }
    if gzip {
        request = request.header("grpc-encoding", "gzip");
    }
    let request = request.body(Full::new(body)).unwrap();

    let kept = world.client.lock().unwrap().take();
    let (head, answer_body) = world.runtime.block_on(async {
        // One connection, kept alive across inputs; a new one when the
        // edge closed it.
        let mut sender = match kept {
            Some(mut sender) => match sender.ready().await {
                Ok(()) => sender,
                Err(_) => connect(world.address).await,
            },
            None => connect(world.address).await,
        };
        let response = sender
            .send_request(request)
            .await
            .unwrap_or_else(|error| panic!("the edge dropped the request: {error}"));
        *world.client.lock().unwrap() = Some(sender);
        let (head, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|error| panic!("the answer broke off: {error}"))
            .to_bytes();
        (head, body)
    });
    assert_eq!(head.status, http::StatusCode::OK, "{head:?}");
    if origin {
        assert_eq!(
            head.headers
                .get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|value| value.as_bytes()),
            Some(ORIGIN.as_bytes()),
            "{head:?}"
        );
    }
    let answer = read_answer(&head.headers, answer_body);
    // Whatever the body, the request's own fault is never `INTERNAL` or
    // `UNKNOWN`.
    assert!(
        !matches!(answer.code, Code::Unknown | Code::Internal),
        "{path}: answered {:?} {:?}",
        answer.code,
        answer.message
    );

    // A request the client encoded correctly, of a valid message, is
    // answered with that message.
    let well_formed = framed && (encode == text) && !gzip;
    if path == ECHO
        && well_formed
        && let Ok(sent) = EchoRequest::decode(rest)
    {
        assert_eq!(answer.code, Code::Ok, "{:?}", answer.message);
        assert_eq!(answer.messages.len(), 1);
        let echoed = EchoResponse::decode(answer.messages[0].clone()).unwrap();
        assert_eq!(echoed.message, sent.message);
    }
    if answer.code != Code::Ok {
        assert!(answer.messages.is_empty(), "messages before an error");
    }
});
