//! A service run on its own (`boxoffice serve accounts`, as Kubernetes runs
//! it) answers `/ready` and `/metrics` on its admin listener: calls per RPC
//! and status, latency, its PostgreSQL pool, and (inventory) the hold
//! sweeper's progress and the latency of its Redis calls.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_runtime::test_util::TestDb;

fn free_port() -> SocketAddr {
    let held = TcpListener::bind("127.0.0.1:0").expect("a free port");
    held.local_addr().expect("an address")
}

/// `GET path` over HTTP/1.1: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `boxoffice serve <service>` on free ports, once its `/ready` answers 200:
/// the process, its gRPC address and its admin address.
async fn serve(
    service: &str,
    url: &str,
    extra: &[(&str, &str)],
) -> (Process, SocketAddr, SocketAddr) {
    let (listen, admin) = (free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    command
        .args(["serve", service])
        .env("BOXOFFICE_DATABASE_URL", url)
        .env("BOXOFFICE_LISTEN", listen.to_string())
        .env("BOXOFFICE_ADMIN_LISTEN", admin.to_string())
        .env(
            "BOXOFFICE_JWT_SECRET",
            "a-test-secret-that-is-long-enough-for-hs256",
        )
        .env("BOXOFFICE_LOG", "warn");
    for (key, value) in extra {
        command.env(key, value);
    }
    let process = Process(
        command
            .spawn()
            .unwrap_or_else(|error| panic!("starting boxoffice serve {service}: {error}")),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = get(admin, "/ready") {
            assert_eq!(body, "ok\n");
            break;
        }
        assert!(Instant::now() < deadline, "/ready never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (process, listen, admin)
}

#[tokio::test]
async fn a_service_on_its_own_serves_ready_and_metrics() {
    let db = TestDb::new().await;
    let database = db.name.clone();
    let (process, listen, admin) = serve("accounts", db.url.expose(), &[]).await;

    let mut client =
        pb::accounts_service_client::AccountsServiceClient::connect(format!("http://{listen}"))
            .await
            .expect("connecting to accounts");
    client
        .register(pb::RegisterRequest {
            email: format!("{database}@example.com"),
            password: "a long enough password".into(),
            display_name: "Ada".into(),
        })
        .await
        .expect("registering");
    let anonymous = client
        .get_me(pb::GetMeRequest::default())
        .await
        .expect_err("GetMe needs a caller");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let (status, metrics) = get(admin, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"boxoffice_rpc_requests_total{service="boxoffice.accounts.v1.AccountsService",method="Register",code="OK"} 1"#,
        r#"boxoffice_rpc_requests_total{service="boxoffice.accounts.v1.AccountsService",method="GetMe",code="UNAUTHENTICATED"} 1"#,
        r#"boxoffice_rpc_duration_seconds_count{service="boxoffice.accounts.v1.AccountsService",method="Register"} 1"#,
        "boxoffice_db_pool_max_connections",
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
    // Personal data never reaches the metrics.
    assert!(!metrics.contains(&database), "{metrics}");
    assert_eq!(get(admin, "/nothing").map(|(status, _)| status), Some(404));

    // No sweeper runs here, so none of its lines.
    assert!(!metrics.contains("boxoffice_inventory_sweep"), "{metrics}");
    drop(process);
}

#[tokio::test]
async fn inventory_on_its_own_shows_its_hold_sweeper_keeping_up() {
    let db = TestDb::new().await;
    let prefix = format!("{}:", db.name);
    let (process, _, admin) = serve(
        "inventory",
        db.url.expose(),
        &[
            ("BOXOFFICE_REDIS_KEY_PREFIX", &prefix),
            ("BOXOFFICE_HOLD_SWEEP_INTERVAL_MS", "50"),
        ],
    )
    .await;
    // Passes finish one after another: their Redis calls are measured and
    // the age since the last finished pass stays below a second.
    let number = |metrics: &str, prefix: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|value| value.trim().parse().ok())
    };
    let redis_count = r#"boxoffice_redis_call_duration_seconds_count{store="inventory"} "#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (status, metrics) = get(admin, "/metrics").expect("/metrics");
        assert_eq!(status, 200);
        let age = number(&metrics, "boxoffice_inventory_sweep_age_seconds ");
        let calls = number(&metrics, redis_count);
        if age.is_some_and(|age| age < 1.0) && calls.is_some_and(|calls| calls >= 2.0) {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper's passes and their Redis calls never showed:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains("boxoffice_inventory_sweep_failures 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("boxoffice_inventory_holds_expired_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"boxoffice_redis_call_failures_total{store="inventory"} 0"#),
        "{metrics}"
    );
    drop(process);
}
