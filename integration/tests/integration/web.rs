//! The web app's files on the edge's public address: content types, cache
//! headers (hashed assets immutable, `index.html` revalidated, with ETags),
//! the single-page-app fallback for the app's own paths, 404 for missing
//! files, HEAD, and the API untouched beside it — gRPC over HTTP/2,
//! grpc-web over HTTP/1.1 from a page's origin, and a GET on an RPC path
//! still answered by the proxy, not with `index.html`. Also the
//! `BOXOFFICE_WEB_DIR` setting: `off`, a directory without a build, and the
//! default that is off when there is no build.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_edge::EdgeConfig;
use boxoffice_edge::config::ENV_WEB_DIR;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use prost::Message as _;
use tokio::net::TcpStream;

use crate::edge_world::EdgeWorld;

const INDEX: &str = "<!doctype html><title>boxoffice</title><script type=module src=/assets/index-AbC123.js></script>";
const SCRIPT: &str = "console.log('boxoffice');";
const STYLE: &str = "body{margin:0}";

fn build_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("assets")).expect("assets/");
    for (path, text) in [
        ("index.html", INDEX),
        ("assets/index-AbC123.js", SCRIPT),
        ("assets/index-DeF456.css", STYLE),
        ("favicon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"),
    ] {
        std::fs::write(dir.path().join(path), text).expect("writing a build file");
    }
    dir
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> http::Response<Bytes> {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the edge");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("HTTP/1.1 exchange");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("reading the body").to_bytes();
    http::Response::from_parts(parts, body)
}

async fn get(addr: SocketAddr, path: &str) -> http::Response<Bytes> {
    send(addr, "GET", path, &[], Vec::new()).await
}

fn header<'a>(response: &'a http::Response<Bytes>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("an ASCII header"))
        .unwrap_or("")
}

#[tokio::test]
async fn the_edge_serves_the_app_with_content_types_cache_headers_and_a_fallback() {
    let build = build_dir();
    let dir = build.path().to_path_buf();
    let world = EdgeWorld::with(|config| config.web_dir = Some(dir)).await;
    let addr = world.edge.addr;

    let index = get(addr, "/").await;
    assert_eq!(index.status(), http::StatusCode::OK);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&index, "cache-control"), "no-cache");
    assert_eq!(header(&index, "x-content-type-options"), "nosniff");
    assert_eq!(index.body(), INDEX.as_bytes());
    let etag = header(&index, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 2, "etag {etag:?}");

    let again = send(addr, "GET", "/", &[("if-none-match", &etag)], Vec::new()).await;
    assert_eq!(again.status(), http::StatusCode::NOT_MODIFIED);
    assert!(again.body().is_empty());

    let script = get(addr, "/assets/index-AbC123.js?v=1").await;
    assert_eq!(script.status(), http::StatusCode::OK);
    assert_eq!(
        header(&script, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&script, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(script.body(), SCRIPT.as_bytes());

    let style = get(addr, "/assets/index-DeF456.css").await;
    assert_eq!(header(&style, "content-type"), "text/css; charset=utf-8");
    assert_eq!(
        header(&style, "cache-control"),
        "public, max-age=31536000, immutable"
    );

    let icon = get(addr, "/favicon.svg").await;
    assert_eq!(header(&icon, "content-type"), "image/svg+xml");
    assert_eq!(
        header(&icon, "cache-control"),
        "no-cache",
        "files outside assets/ are not hashed: revalidate them"
    );

    // The app's own routes get index.html, so a reload or a shared link works.
    for path in [
        "/events/0b0c5eed-0000-4000-8000-000000000000",
        "/bookings",
        "/login?next=/",
    ] {
        let page = get(addr, path).await;
        assert_eq!(page.status(), http::StatusCode::OK, "{path}");
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "cache-control"), "no-cache");
        assert_eq!(page.body(), INDEX.as_bytes(), "{path}");
    }

    // A missing file is a 404, not the app (a stale hashed asset must fail loudly).
    let missing = get(addr, "/assets/index-gone.js").await;
    assert_eq!(missing.status(), http::StatusCode::NOT_FOUND);
    let outside = get(addr, "/../../etc/passwd").await;
    assert_ne!(
        outside.body().as_ref(),
        b"root",
        "nothing outside the build"
    );
    assert!(!String::from_utf8_lossy(outside.body()).contains("root:"));

    let head = send(addr, "HEAD", "/assets/index-AbC123.js", &[], Vec::new()).await;
    assert_eq!(head.status(), http::StatusCode::OK);
    assert_eq!(header(&head, "content-length"), SCRIPT.len().to_string());
    assert!(head.body().is_empty());

    // A GET on an RPC path is still the API's (which refuses it), not the app.
    let rpc_get = get(addr, "/boxoffice.catalog.v1.CatalogService/GetEvent").await;
    assert_ne!(rpc_get.body().as_ref(), INDEX.as_bytes());
    assert!(
        !header(&rpc_get, "content-type").starts_with("text/html")
            && header(&rpc_get, "cache-control").is_empty()
            && header(&rpc_get, "etag").is_empty(),
        "a GET on an RPC path is left to the API: {} {:?}",
        rpc_get.status(),
        rpc_get.headers()
    );

    // The API beside the app: plain gRPC over HTTP/2 ...
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
    assert_eq!(over_grpc.id, event.id);

    // ... and grpc-web from the page's own origin over HTTP/1.1.
    let message = request.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let origin = format!("http://{addr}");
    let answer = send(
        addr,
        "POST",
        "/boxoffice.catalog.v1.CatalogService/GetEvent",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("origin", &origin),
        ],
        framed,
    )
    .await;
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert!(
        header(&answer, "content-type").starts_with("application/grpc-web"),
        "{:?}",
        answer.headers()
    );
    let body = answer.body();
    assert_eq!(body[0], 0, "the first frame is a message");
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let over_web = pb::Event::decode(&body[5..5 + length]).expect("an Event");
    assert_eq!(over_web, over_grpc);
    assert!(
        String::from_utf8_lossy(&body[5 + length..]).contains("grpc-status:0"),
        "trailers follow the message"
    );
}

#[tokio::test]
async fn without_a_web_directory_the_edge_serves_no_pages() {
    let world = EdgeWorld::new().await;
    let page = get(world.edge.addr, "/").await;
    assert_ne!(page.status(), http::StatusCode::OK);
    assert!(!header(&page, "content-type").starts_with("text/html"));
}

#[test]
fn the_web_directory_setting_is_validated() {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let vars = |value: &str| BTreeMap::from([(ENV_WEB_DIR.to_owned(), value.to_owned())]);

    let build = build_dir();
    let path = build.path().to_str().expect("a UTF-8 path");
    let config = EdgeConfig::from_vars(listen, &vars(path)).expect("a build directory");
    assert_eq!(config.web_dir.as_deref(), Some(build.path()));

    let config = EdgeConfig::from_vars(listen, &vars("off")).expect("off");
    assert_eq!(config.web_dir, None);

    let empty = tempfile::tempdir().expect("a temporary directory");
    let error = EdgeConfig::from_vars(listen, &vars(empty.path().to_str().expect("UTF-8")))
        .expect_err("a directory without index.html is refused");
    assert_eq!(error.variable, ENV_WEB_DIR);
    assert!(error.problem.contains("index.html"), "{}", error.problem);

    // Tests run in integration/, where there is no web/dist: off by default.
    let config = EdgeConfig::from_vars(listen, &BTreeMap::new()).expect("defaults");
    assert_eq!(config.web_dir, None);
}
