//! The edge, through the tools users use: grpcurl lists and calls services;
//! a browser-style grpc-web request gets the same answer as gRPC; identity
//! metadata a client forges is stripped; expired, forged and unsigned tokens
//! are refused; admin and service-to-service RPCs are closed to outsiders;
//! rate limits answer RESOURCE_EXHAUSTED with RetryInfo; a killed upstream
//! instance costs at most the requests that were in flight on it; hundreds
//! of server streams pass through without holding the concurrency cap, and
//! a client that leaves closes its upstream stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use boxoffice_accounts::TokenConfig;
use boxoffice_accounts::token::{AccessClaims, TokenIssuer, unix_now};
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_edge::config::RateLimit;
use boxoffice_runtime::status::reason_of;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use prost::Message as _;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::edge_world::{
    BOTH_WAYS, EdgeWorld, connect, edge_config, run_grpcurl, start_edge, start_upstream, with_token,
};
use crate::harness::{KillableProxy, TestDb, eventually};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_services_through_the_edge() {
    let world = EdgeWorld::new().await;
    let event = world.published_event().await;
    let addr = world.edge.addr;

    let (ok, listed, stderr) = run_grpcurl(addr, &[], &["list"]).await;
    assert!(ok, "grpcurl list failed: {stderr}");
    for service in [
        "boxoffice.catalog.v1.CatalogService",
        "boxoffice.accounts.v1.AccountsService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.lines().any(|line| line.trim() == service),
            "{service} missing from:\n{listed}"
        );
    }

    let (ok, described, stderr) = run_grpcurl(
        addr,
        &[],
        &["describe", "boxoffice.catalog.v1.CatalogService.GetEvent"],
    )
    .await;
    assert!(ok, "grpcurl describe failed: {stderr}");
    assert!(described.contains("GetEventRequest"), "{described}");

    let body = format!(r#"{{"id":"{}"}}"#, event.id);
    let (ok, called, stderr) = run_grpcurl(
        addr,
        &["-d", &body],
        &["boxoffice.catalog.v1.CatalogService/GetEvent"],
    )
    .await;
    assert!(ok, "grpcurl GetEvent failed: {stderr}");
    assert!(
        called.contains(&event.title),
        "the answer names the event:\n{called}"
    );

    let (ok, _, stderr) = run_grpcurl(
        addr,
        &["-d", "{}"],
        &["boxoffice.accounts.v1.AccountsService/GetMe"],
    )
    .await;
    assert!(!ok, "GetMe without a token must fail");
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    let (ok, health, stderr) = run_grpcurl(addr, &[], &["grpc.health.v1.Health/Check"]).await;
    assert!(ok, "{stderr}");
    assert!(health.contains("SERVING"), "{health}");
}

/// One grpc-web exchange over HTTP/1.1, as a browser library makes it.
struct GrpcWebAnswer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    messages: Vec<Bytes>,
    trailers: String,
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

async fn http1(
    addr: SocketAddr,
    request: http::Request<http_body_util::Full<Bytes>>,
) -> http::Response<Bytes> {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the edge");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .expect("HTTP/1.1 exchange");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("reading the body").to_bytes();
    http::Response::from_parts(parts, body)
}

async fn grpc_web(
    addr: SocketAddr,
    path: &str,
    message: &[u8],
    text: bool,
    headers: &[(&str, &str)],
) -> GrpcWebAnswer {
    let framed = frame(message);
    let body = if text {
        Bytes::from(STANDARD.encode(&framed))
    } else {
        Bytes::from(framed)
    };
    grpc_web_body(addr, path, body, text, headers).await
}

/// [`grpc_web`] with the body as sent (framed, and base64 for text).
async fn grpc_web_body(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    text: bool,
    headers: &[(&str, &str)],
) -> GrpcWebAnswer {
    let content_type = if text {
        "application/grpc-web-text"
    } else {
        "application/grpc-web+proto"
    };
    let mut request = http::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = http1(
        addr,
        request
            .body(http_body_util::Full::new(body))
            .expect("request"),
    )
    .await;
    let (parts, body) = response.into_parts();
    let raw = if text {
        // Every 4-character base64 quantum decodes on its own, so segments
        // the server padded separately decode in one pass.
        let text: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        text.chunks(4)
            .flat_map(|quantum| STANDARD.decode(quantum).expect("base64 body"))
            .collect()
    } else {
        body.to_vec()
    };
    let (mut messages, mut trailers, mut rest) = (Vec::new(), String::new(), &raw[..]);
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload));
        } else {
            messages.push(Bytes::copy_from_slice(payload));
        }
        rest = &rest[5 + len..];
    }
    // A trailers-only answer carries the status in the headers.
    for name in ["grpc-status", "grpc-message"] {
        if let Some(value) = parts.headers.get(name) {
            trailers.push_str(&format!(
                "{name}:{}\r\n",
                value.to_str().unwrap_or_default()
            ));
        }
    }
    GrpcWebAnswer {
        status: parts.status,
        headers: parts.headers,
        messages,
        trailers,
    }
}

#[tokio::test]
async fn grpc_web_binary_and_text_get_the_same_answer_as_grpc() {
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |_| {}).await;
        let event = world.published_event().await;
        let request = pb::GetEventRequest {
            id: event.id.clone(),
        };
        let over_grpc = world
            .catalog()
            .get_event(request.clone())
            .await
            .expect("GetEvent over gRPC")
            .into_inner();

        for text in [false, true] {
            let answer = grpc_web(
                world.edge.addr,
                "/boxoffice.catalog.v1.CatalogService/GetEvent",
                &request.encode_to_vec(),
                text,
                &[("origin", "http://localhost:3000")],
            )
            .await;
            assert_eq!(answer.status, http::StatusCode::OK);
            assert!(
                answer.trailers.contains("grpc-status:0"),
                "trailers: {:?}",
                answer.trailers
            );
            assert_eq!(answer.messages.len(), 1);
            let over_web = pb::Event::decode(answer.messages[0].clone()).expect("an Event");
            assert_eq!(
                over_web, over_grpc,
                "grpc-web (text: {text}) and gRPC agree"
            );
            assert_eq!(
                answer
                    .headers
                    .get("access-control-allow-origin")
                    .map(|v| v.to_str().unwrap()),
                Some("http://localhost:3000")
            );
            let exposed = answer
                .headers
                .get("access-control-expose-headers")
                .expect("exposed headers")
                .to_str()
                .unwrap();
            for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                assert!(exposed.contains(header), "{header} not exposed: {exposed}");
            }
        }

        // grpc-web-text that is not base64 is the caller's malformed
        // request, not a broken connection (found by fuzz/grpc_web), for a
        // proxied call and for the edge's own services alike.
        for path in [
            "/boxoffice.catalog.v1.CatalogService/GetEvent",
            "/grpc.health.v1.Health/Check",
        ] {
            for body in ["%%% not base64 %%%", "AAAAAA=A"] {
                let answer = grpc_web_body(
                    world.edge.addr,
                    path,
                    Bytes::from_static(body.as_bytes()),
                    true,
                    &[("origin", "http://localhost:3000")],
                )
                .await;
                assert!(
                    answer
                        .trailers
                        .contains(&format!("grpc-status:{}", Code::InvalidArgument as i32)),
                    "{path} {body:?}: {}",
                    answer.trailers
                );
                // "... could not be decoded", percent-encoded.
                assert!(
                    answer.trailers.contains("could%20not%20be%20decoded"),
                    "{path} {body:?}: {}",
                    answer.trailers
                );
            }
        }

        // Errors reach browsers too, with the status readable.
        let answer = grpc_web(
            world.edge.addr,
            "/boxoffice.accounts.v1.AccountsService/GetMe",
            &[],
            false,
            &[("origin", "http://localhost:3000")],
        )
        .await;
        assert!(
            answer
                .trailers
                .contains(&format!("grpc-status:{}", Code::Unauthenticated as i32)),
            "{}",
            answer.trailers
        );
    }
}

#[tokio::test]
async fn cors_preflight_admits_only_configured_origins() {
    let world = EdgeWorld::new().await;
    let preflight = |origin: &'static str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/boxoffice.catalog.v1.CatalogService/GetEvent")
            .header("host", "edge")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            )
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request")
    };
    let allowed = http1(world.edge.addr, preflight("http://localhost:3000")).await;
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed_headers.contains("x-grpc-web") && allowed_headers.contains("authorization"));

    let refused = http1(world.edge.addr, preflight("https://evil.example")).await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn forged_identity_metadata_is_stripped() {
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |_| {}).await;
        let event = world.published_event().await;
        let admin = world.admin_token().await;
        // A draft is visible to admins only.
        let draft = world
            .catalog()
            .create_event(with_token(
                &admin,
                pb::CreateEventRequest {
                    event: Some(pb::Event {
                        title: "Secret Draft".into(),
                        venue_id: event.venue_id.clone(),
                        start_time: event.start_time,
                        end_time: event.end_time,
                        category: pb::Category::Concert as i32,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("an admin creates a draft through the edge")
            .into_inner();
        let get = || pb::GetEventRequest {
            id: draft.id.clone(),
        };

        let forge = |request: &mut tonic::Request<pb::GetEventRequest>| {
            let metadata = request.metadata_mut();
            metadata.insert(
                "x-boxoffice-user-id",
                uuid::Uuid::new_v4().to_string().parse().unwrap(),
            );
            metadata.insert("x-boxoffice-roles", "admin".parse().unwrap());
        };
        let mut anonymous = tonic::Request::new(get());
        forge(&mut anonymous);
        let status = world.catalog().get_event(anonymous).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "forged admin metadata must not reveal a draft"
        );

        let customer = world.customer_token("forger@example.com").await;
        let mut as_customer = with_token(&customer, get());
        forge(&mut as_customer);
        let status = world.catalog().get_event(as_customer).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "a customer cannot promote itself with metadata"
        );

        let seen = world
            .catalog()
            .get_event(with_token(&admin, get()))
            .await
            .expect("the admin sees the draft");
        assert_eq!(seen.into_inner().title, "Secret Draft");
    }
}

fn claims(tokens: &TokenConfig, exp: u64) -> AccessClaims {
    AccessClaims {
        sub: uuid::Uuid::new_v4().to_string(),
        iss: tokens.issuer.clone(),
        aud: tokens.audience.clone(),
        iat: unix_now() - 7200,
        nbf: unix_now() - 7200,
        exp,
        jti: "test".into(),
        roles: vec!["customer".into(), "admin".into()],
        sid: None,
    }
}

#[tokio::test]
async fn expired_forged_and_unsigned_tokens_are_unauthenticated() {
    let world = EdgeWorld::new().await;
    let expired = TokenIssuer::new(&world.tokens)
        .sign_claims(&claims(&world.tokens, unix_now() - 3600))
        .unwrap();
    let forged = TokenIssuer::new(&TokenConfig::ephemeral())
        .sign_claims(&claims(&world.tokens, unix_now() + 3600))
        .unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&claims(&world.tokens, unix_now() + 3600)).expect("claims serialize"),
    );
    let unsigned = format!("{header}.{payload}.");
    let mut wrong_audience = claims(&world.tokens, unix_now() + 3600);
    wrong_audience.aud = "another-system".into();
    let wrong_audience = TokenIssuer::new(&world.tokens)
        .sign_claims(&wrong_audience)
        .unwrap();

    for (name, token, reason) in [
        ("expired", expired.as_str(), "TOKEN_EXPIRED"),
        ("forged", forged.as_str(), "TOKEN_INVALID"),
        ("alg none", unsigned.as_str(), "TOKEN_INVALID"),
        ("wrong audience", wrong_audience.as_str(), "TOKEN_INVALID"),
        ("garbage", "not-a-jwt", "TOKEN_INVALID"),
    ] {
        // Even a public read refuses a bad token rather than running anonymously.
        let status = world
            .catalog()
            .get_event(with_token(
                token,
                pb::GetEventRequest {
                    id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{name}");
        assert_eq!(reason_of(&status).as_deref(), Some(reason), "{name}");
        let status = world
            .catalog()
            .create_venue(with_token(token, pb::CreateVenueRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{name} on an admin RPC"
        );
    }
}

#[tokio::test]
async fn admin_rpcs_need_the_admin_role_and_internal_rpcs_do_not_exist_outside() {
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |_| {}).await;
        let status = world
            .catalog()
            .create_venue(pb::CreateVenueRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        let customer = world.customer_token("shopper@example.com").await;
        let status = world
            .catalog()
            .create_venue(with_token(&customer, pb::CreateVenueRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let admin = world.admin_token().await;
        let status = world
            .catalog()
            .create_venue(with_token(&admin, pb::CreateVenueRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "the admin's call reaches the catalog, which checks the input"
        );

        // Service-to-service RPCs answer exactly like methods that do not exist.
        let mut grpc = tonic::client::Grpc::new(world.channel.clone());
        for path in [
            "/boxoffice.inventory.v1.InventoryService/CommitHold",
            "/boxoffice.inventory.v1.InventoryService/ReleaseSeats",
            "/boxoffice.inventory.v1.InventoryService/WatchSoldOut",
            "/boxoffice.catalog.v1.NoSuchService/Anything",
        ] {
            grpc.ready().await.expect("channel ready");
            let codec = tonic_prost::ProstCodec::<pb::GetEventRequest, pb::Event>::default();
            let status = grpc
                .unary(
                    with_token(&admin, pb::GetEventRequest::default()),
                    http::uri::PathAndQuery::from_static(path),
                    codec,
                )
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unimplemented, "{path}");
        }
    }
}

async fn join_queue_through(
    world: &EdgeWorld,
    token: Option<&str>,
) -> Result<tonic::Response<inventory_pb::QueueStatus>, tonic::Status> {
    let request = inventory_pb::JoinQueueRequest {
        event_id: uuid::Uuid::new_v4().to_string(),
    };
    let request = match token {
        Some(token) => with_token(token, request),
        None => tonic::Request::new(request),
    };
    inventory_pb::waiting_room_service_client::WaitingRoomServiceClient::new(world.channel.clone())
        .join_queue(request)
        .await
}

fn assert_join_limited(status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some("RATE_LIMITED"));
    assert!(status.message().contains("queue joins"), "{status:?}");
    assert!(status.get_details_retry_info().is_some(), "RetryInfo");
}

#[tokio::test]
async fn queue_joins_are_limited_per_account_and_per_address_at_the_edge() {
    // Per account: the join limit bites long before the general one, and
    // only JoinQueue is limited by it.
    let world = EdgeWorld::with(|config| {
        config.joins_per_user = RateLimit {
            per_second: 0.1,
            burst: 2.0,
        };
    })
    .await;
    let bot = world.customer_token("bot@example.com").await;
    for _ in 0..2 {
        let status = join_queue_through(&world, Some(&bot)).await.unwrap_err();
        assert_ne!(
            status.code(),
            Code::ResourceExhausted,
            "within the burst: {status:?}"
        );
    }
    assert_join_limited(&join_queue_through(&world, Some(&bot)).await.unwrap_err());
    let status = world
        .catalog()
        .get_event(with_token(
            &bot,
            pb::GetEventRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "other calls are not join-limited"
    );
    let person = world.customer_token("person@example.com").await;
    let status = join_queue_through(&world, Some(&person)).await.unwrap_err();
    assert_ne!(
        status.code(),
        Code::ResourceExhausted,
        "another account: {status:?}"
    );

    // Per address: many accounts from one address share its bucket.
    let world = EdgeWorld::with(|config| {
        config.joins_per_address = RateLimit {
            per_second: 0.1,
            burst: 3.0,
        };
    })
    .await;
    let mut limited = None;
    for index in 0..4 {
        let token = world
            .customer_token(&format!("farm{index}@example.com"))
            .await;
        let status = join_queue_through(&world, Some(&token)).await.unwrap_err();
        if status.code() == Code::ResourceExhausted {
            limited = Some((index, status));
            break;
        }
    }
    let (index, status) = limited.expect("the address's joins were limited");
    assert_eq!(index, 3, "the burst of three went through first");
    assert_join_limited(&status);
}

#[tokio::test]
async fn rate_limits_answer_resource_exhausted_with_retry_info() {
    let world = EdgeWorld::with(|config| {
        config.rate_per_user = RateLimit {
            per_second: 0.2,
            burst: 3.0,
        };
    })
    .await;
    let token = world.customer_token("busy@example.com").await;
    let call = || {
        let mut catalog = world.catalog();
        let request = with_token(
            &token,
            pb::GetEventRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
        );
        async move { catalog.get_event(request).await }
    };
    for _ in 0..3 {
        assert_eq!(
            call().await.unwrap_err().code(),
            Code::NotFound,
            "within the burst"
        );
    }
    let status = call().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&status).as_deref(), Some("RATE_LIMITED"));
    let retry = status.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.expect("a delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(5),
        "{delay:?}"
    );
    // Another user has a bucket of its own.
    let other = world.customer_token("calm@example.com").await;
    let status = world
        .catalog()
        .get_event(with_token(
            &other,
            pb::GetEventRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let world = EdgeWorld::with(|config| {
        config.rate_per_address = RateLimit {
            per_second: 0.2,
            burst: 2.0,
        };
    })
    .await;
    let mut limited = None;
    for _ in 0..3 {
        if let Err(status) = world
            .catalog()
            .get_event(pb::GetEventRequest {
                id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            && status.code() == Code::ResourceExhausted
        {
            limited = Some(status);
        }
    }
    let status = limited.expect("the third anonymous call from one address is limited");
    assert!(status.get_details_retry_info().is_some());
}

#[tokio::test]
async fn deadlines_and_message_sizes_are_enforced() {
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |config| config.max_message_bytes = 1024).await;
        let status = world
            .catalog()
            .get_event(pb::GetEventRequest {
                id: "x".repeat(4096),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&status).as_deref(), Some("MESSAGE_TOO_LARGE"));

        let request = tonic::Request::new(pb::GetEventRequest {
            id: uuid::Uuid::new_v4().to_string(),
        });
        // tonic and grpcurl enforce deadlines themselves, so send the header raw.
        let answer = grpc_web(
            world.edge.addr,
            "/boxoffice.catalog.v1.CatalogService/GetEvent",
            &request.into_inner().encode_to_vec(),
            false,
            &[("grpc-timeout", "1n")],
        )
        .await;
        assert!(
            answer
                .trailers
                .contains(&format!("grpc-status:{}", Code::DeadlineExceeded as i32)),
            "{}",
            answer.trailers
        );
    }
}

#[tokio::test]
async fn health_metrics_and_request_ids() {
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |_| {}).await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(world.channel.clone());
        for service in [
            "",
            "boxoffice.catalog.v1.CatalogService",
            "boxoffice.accounts.v1.AccountsService",
        ] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("edge health")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service}"
            );
        }

        let mut request = tonic::Request::new(pb::GetEventRequest {
            id: uuid::Uuid::new_v4().to_string(),
        });
        request
            .metadata_mut()
            .insert("x-request-id", "trace-me-123".parse().unwrap());
        let status = world.catalog().get_event(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status
                .metadata()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap()),
            Some("trace-me-123")
        );

        let admin = world.edge.admin_addr.expect("admin listener");
        let metrics = http1(
            admin,
            http::Request::get("/metrics")
                .header("host", "admin")
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        let text = String::from_utf8_lossy(metrics.body()).into_owned();
        assert!(
            text.contains(r#"boxoffice_edge_requests_total{service="boxoffice.catalog.v1.CatalogService",method="GetEvent",code="NOT_FOUND"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("boxoffice_edge_upstream_healthy{cluster=\"catalog\""),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_killed_upstream_instance_moves_traffic_to_the_other() {
    let db = TestDb::new().await;
    let tokens = TokenConfig::ephemeral();
    let survivor = start_upstream(&db, &tokens).await;
    let doomed = start_upstream(&db, &tokens).await;
    let proxy = KillableProxy::start(doomed.server.addr).await;
    let edge = start_edge(edge_config(&[survivor.server.addr, proxy.addr]), &tokens).await;
    let store = boxoffice_catalog::store::CatalogStore::new(db.pool.clone());
    boxoffice_catalog::seed::seed_if_empty(&store, 3)
        .await
        .expect("seeding");
    let channel = connect(edge.addr).await;
    let event = pb::catalog_service_client::CatalogServiceClient::new(channel.clone())
        .list_events(pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("listing")
        .into_inner()
        .events
        .remove(0);

    let stats = |authority: SocketAddr| {
        edge.handle
            .endpoints()
            .into_iter()
            .find(|stats| stats.cluster == "catalog" && stats.endpoint == authority.to_string())
            .expect("endpoint stats")
    };

    const WORKERS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicU64::new(0));
    // Each failure with whether its request was sent after the edge had
    // ejected the killed instance (those sent before may still have been
    // on their way to it).
    let failures = Arc::new(std::sync::Mutex::new(Vec::<(bool, String)>::new()));
    let ejected = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (stop, successes, failures, ejected) = (
            stop.clone(),
            successes.clone(),
            failures.clone(),
            ejected.clone(),
        );
        let mut client = pb::catalog_service_client::CatalogServiceClient::new(channel.clone());
        let id = event.id.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent_after_ejection = ejected.load(Ordering::SeqCst);
                match client
                    .get_event(pb::GetEventRequest { id: id.clone() })
                    .await
                {
                    Ok(_) => successes.fetch_add(1, Ordering::Relaxed),
                    Err(status) => {
                        failures.lock().unwrap().push((
                            sent_after_ejection,
                            format!("{:?}: {}", status.code(), status.message()),
                        ));
                        0
                    }
                };
            }
        }));
    }

    eventually(WAIT, "both instances to serve traffic", || async {
        (stats(survivor.server.addr).requests > 50 && stats(proxy.addr).requests > 50).then_some(())
    })
    .await;
    proxy.kill();
    eventually(WAIT, "the killed instance to be ejected", || async {
        (!stats(proxy.addr).healthy).then_some(())
    })
    .await;
    ejected.store(true, Ordering::SeqCst);
    let requests_at_ejection = stats(proxy.addr).requests;
    let served = successes.load(Ordering::Relaxed);
    eventually(WAIT, "traffic to carry on", || async {
        (successes.load(Ordering::Relaxed) > served + 500).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.len() <= WORKERS,
        "at most the {WORKERS} in-flight requests may fail, got {}: {failures:?}",
        failures.len()
    );
    assert!(
        failures
            .iter()
            .all(|(sent_after_ejection, _)| !sent_after_ejection),
        "nothing sent after the ejection fails: {failures:?}"
    );
    assert_eq!(
        stats(proxy.addr).requests,
        requests_at_ejection,
        "no traffic goes to the dead instance"
    );
    assert!(stats(survivor.server.addr).healthy);
}

/// Inventory as the edge sees it, with nothing behind it: `WatchAvailability`
/// sends one snapshot and then stays open and silent (counting the watches
/// open), `GetAvailability` answers at once.
#[derive(Clone, Default)]
struct WatchStub {
    open: Arc<AtomicU64>,
}

struct OpenWatch(Arc<AtomicU64>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type StubStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<inventory_pb::AvailabilityUpdate, tonic::Status>> + Send>,
>;

fn not_in_stub<T>() -> Result<tonic::Response<T>, tonic::Status> {
    Err(tonic::Status::unimplemented("not in the stub"))
}

#[tonic::async_trait]
impl inventory_pb::inventory_service_server::InventoryService for WatchStub {
    async fn get_availability(
        &self,
        request: tonic::Request<inventory_pb::GetAvailabilityRequest>,
    ) -> Result<tonic::Response<inventory_pb::Availability>, tonic::Status> {
        Ok(tonic::Response::new(inventory_pb::Availability {
            event_id: request.into_inner().event_id,
            ..Default::default()
        }))
    }

    type WatchAvailabilityStream = StubStream;

    async fn watch_availability(
        &self,
        request: tonic::Request<inventory_pb::WatchAvailabilityRequest>,
    ) -> Result<tonic::Response<StubStream>, tonic::Status> {
        use futures::StreamExt as _;
        self.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenWatch(self.open.clone());
        let snapshot = inventory_pb::AvailabilityUpdate {
            update: Some(inventory_pb::availability_update::Update::Snapshot(
                inventory_pb::Availability {
                    event_id: request.into_inner().event_id,
                    seat_count: 8,
                    ..Default::default()
                },
            )),
        };
        let stream = futures::stream::once(async move { Ok(snapshot) })
            .chain(futures::stream::pending())
            .inspect(move |_| {
                let _ = &open;
            });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn hold_seats(
        &self,
        _: tonic::Request<inventory_pb::HoldSeatsRequest>,
    ) -> Result<tonic::Response<inventory_pb::Hold>, tonic::Status> {
        not_in_stub()
    }

    async fn get_hold(
        &self,
        _: tonic::Request<inventory_pb::GetHoldRequest>,
    ) -> Result<tonic::Response<inventory_pb::Hold>, tonic::Status> {
        not_in_stub()
    }

    async fn release_hold(
        &self,
        _: tonic::Request<inventory_pb::ReleaseHoldRequest>,
    ) -> Result<tonic::Response<inventory_pb::Hold>, tonic::Status> {
        not_in_stub()
    }

    async fn commit_hold(
        &self,
        _: tonic::Request<inventory_pb::CommitHoldRequest>,
    ) -> Result<tonic::Response<inventory_pb::CommitHoldResponse>, tonic::Status> {
        not_in_stub()
    }

    async fn release_seats(
        &self,
        _: tonic::Request<inventory_pb::ReleaseSeatsRequest>,
    ) -> Result<tonic::Response<inventory_pb::ReleaseSeatsResponse>, tonic::Status> {
        not_in_stub()
    }

    async fn extend_hold(
        &self,
        _: tonic::Request<inventory_pb::ExtendHoldRequest>,
    ) -> Result<tonic::Response<inventory_pb::Hold>, tonic::Status> {
        not_in_stub()
    }

    type WatchSoldOutStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<inventory_pb::SoldOutEvents, tonic::Status>> + Send>,
    >;

    async fn watch_sold_out(
        &self,
        _: tonic::Request<inventory_pb::WatchSoldOutRequest>,
    ) -> Result<tonic::Response<Self::WatchSoldOutStream>, tonic::Status> {
        not_in_stub()
    }

    async fn set_pricing_rule(
        &self,
        _: tonic::Request<inventory_pb::SetPricingRuleRequest>,
    ) -> Result<tonic::Response<inventory_pb::PricingRule>, tonic::Status> {
        not_in_stub()
    }
}

#[tokio::test]
async fn many_watches_stream_through_without_holding_the_concurrency_cap_and_close_upstream() {
    let stub = WatchStub::default();
    let mut server = boxoffice_runtime::server::GrpcServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("binding the stub");
    server.add_service(
        inventory_pb::inventory_service_server::InventoryServiceServer::new(stub.clone()),
    );
    let upstream = server.local_addr();
    let stop = boxoffice_runtime::Shutdown::new();
    tokio::spawn(server.run_until_stopped(stop.clone(), Duration::from_secs(1)));
    let mut config = edge_config(&[upstream]);
    // More watches than one upstream connection carries, and than the cap.
    const WATCHES: usize = 250;
    if let Some(inventory) = config.clusters.get_mut("inventory") {
        inventory.max_concurrent_requests = Some(16);
    }
    let edge = start_edge(config, &TokenConfig::ephemeral()).await;
    let channel = connect(edge.addr).await;
    let client = inventory_pb::inventory_service_client::InventoryServiceClient::new(channel);

    let mut watches = Vec::new();
    for index in 0..WATCHES {
        let mut stream = client
            .clone()
            .watch_availability(inventory_pb::WatchAvailabilityRequest {
                event_id: format!("event-{index}"),
                cursor: String::new(),
            })
            .await
            .expect("a watch through the edge")
            .into_inner();
        let first = stream
            .message()
            .await
            .expect("the snapshot")
            .expect("a message");
        assert!(matches!(
            first.update,
            Some(inventory_pb::availability_update::Update::Snapshot(ref snapshot))
                if snapshot.event_id == format!("event-{index}")
        ));
        watches.push(stream);
    }
    assert_eq!(stub.open.load(Ordering::Relaxed), WATCHES as u64);
    // Open watches do not count against the cap: unary calls still pass.
    let availability = client
        .clone()
        .get_availability(inventory_pb::GetAvailabilityRequest {
            event_id: "after-the-watches".into(),
        })
        .await
        .expect("a unary call beside the watches")
        .into_inner();
    assert_eq!(availability.event_id, "after-the-watches");

    // A client that goes away cancels its upstream stream.
    watches.truncate(WATCHES / 2);
    eventually(WAIT, "cancelled watches to close upstream", || async {
        (stub.open.load(Ordering::Relaxed) == (WATCHES / 2) as u64).then_some(())
    })
    .await;
    drop(watches);
    eventually(WAIT, "every watch to close upstream", || async {
        (stub.open.load(Ordering::Relaxed) == 0).then_some(())
    })
    .await;
    stop.trigger();
}
