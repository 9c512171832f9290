//! The system as Kubernetes runs it, one process per instance: the edge,
//! two inventory, two checkout, one catalog and one accounts, each
//! `boxoffice serve <service>` on its own address, over a 3-node Redis
//! Cluster, PostgreSQL and the payment simulator. The edge finds the
//! inventory instances by a DNS name (a headless Service) that the test's
//! DNS server answers; checkout reaches them through a stand-in for a
//! ClusterIP Service (a TCP balancer over the same DNS answer, as kube-proxy
//! spreads connections over a Service's ready pods).
//!
//! Under a purchase load (hold, book, pay through the edge, a few buyers at
//! once) an inventory instance is killed with SIGKILL and a new one added
//! under the same name: the edge moves its traffic within seconds, every
//! call that failed meanwhile failed with a status a client retries, and no
//! seat is sold twice. Every process exports its spans over OTLP to a
//! receiver in the test, where one purchase's trace runs from the edge
//! through checkout into inventory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_accounts::config::{ENV_JWT_SECRET, MissingSecret, TokenConfig};
use boxoffice_accounts::token::TokenIssuer;
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use boxoffice_checkout::reason::{CONFIRMATION_IN_PROGRESS, CONFIRMATION_INTERRUPTED};

use crate::checkout_gateway::PaysimProcess;
use crate::discovery::TestDns;
use crate::edge_world::{connect, login, with_token};
use crate::harness::{RedisCluster, TestDb, eventually};
use crate::system_world::standing_event_on_sale;

const WAIT: Duration = Duration::from_secs(30);
/// How long the edge may take to move traffic to a changed DNS answer.
const MOVE_WITHIN: Duration = Duration::from_secs(10);
const INVENTORY_NAME: &str = "inventory.mesh.test";
const JWT_SECRET: &str = "a-mesh-test-secret-long-enough-for-hs256-signing";
const BUYERS: usize = 6;
const CAPACITY: u32 = 3_000;

fn loopback(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, host)
}

/// A port free on 127.0.0.1, .2 and .3 alike (one DNS name, one port, an
/// address per instance, as a headless Service names its pods).
fn port_free_on_three_addresses() -> u16 {
    crate::harness::spare_port(&[loopback(1), loopback(2), loopback(3)])
}

/// `GET path` over HTTP/1.1: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// One `boxoffice serve <service>` process, killed with SIGKILL when
/// dropped. Its log goes to a file of the test's directory.
struct ServiceProcess {
    label: String,
    child: tokio::process::Child,
    admin: SocketAddr,
}

/// What every process of the mesh shares.
struct MeshEnv {
    database_url: String,
    redis_url: String,
    otlp_endpoint: String,
    logs: tempfile::TempDir,
}

impl MeshEnv {
    fn spawn(&self, service: &str, label: &str, env: &[(&str, String)]) -> ServiceProcess {
        let admin = crate::harness::spare_addr();
        let log = std::fs::File::create(self.logs.path().join(format!("{label}.log")))
            .expect("creating a process log");
        let mut command =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice-integration-system"));
        // Only the mesh's settings: nothing of the caller's BOXOFFICE_* or
        // OTEL_* environment.
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("BOXOFFICE_") || text.starts_with("OTEL_") {
                command.env_remove(&name);
            }
        }
        command
            .args(["serve", service])
            .env("BOXOFFICE_DATABASE_URL", &self.database_url)
            .env("BOXOFFICE_REDIS_URL", &self.redis_url)
            .env(ENV_JWT_SECRET, JWT_SECRET)
            .env("BOXOFFICE_LOG", "warn")
            .env("BOXOFFICE_SHUTDOWN_GRACE_SECS", "1")
            .env("BOXOFFICE_ADMIN_LISTEN", admin.to_string())
            .env("BOXOFFICE_EDGE_ADMIN_LISTEN", admin.to_string())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.otlp_endpoint)
            .env("OTEL_SERVICE_NAME", format!("boxoffice-{service}"))
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("service.instance.id={label}"),
            )
            // Spans reach the receiver within a fraction of a second.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().expect("starting boxoffice serve");
        ServiceProcess {
            label: label.to_owned(),
            child,
            admin,
        }
    }

    fn log_of(&self, label: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{label}.log"))).unwrap_or_default()
    }
}

impl ServiceProcess {
    /// Waits until its admin listener answers `/ready` with 200.
    async fn ready(&mut self, env: &MeshEnv) {
        let start = Instant::now();
        loop {
            if let Some((200, _)) = http_get(self.admin, "/ready").await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.label,
                    env.log_of(&self.label)
                );
            }
            assert!(
                start.elapsed() < WAIT,
                "{} not ready within {WAIT:?}:\n{}",
                self.label,
                env.log_of(&self.label)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a node or an OOM kill does it: no drain, no flush.
    async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child
            .wait()
            .await
            .expect("waiting for the process to die");
    }
}

/// Connections open through the [`cluster_ip`] balancer, per instance.
type Connections = Arc<Mutex<BTreeMap<Ipv4Addr, usize>>>;

/// Plays a Kubernetes ClusterIP Service in front of the inventory name:
/// each new connection goes to the next address the DNS table has for it
/// (round robin), skipping one that refuses, so a connection that broke
/// with its instance is made again to one that lives.
async fn cluster_ip(dns: &TestDns, name: &'static str, port: u16) -> (SocketAddr, Connections) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("address");
    let records = dns.records.clone();
    let open = Connections::default();
    let counted = open.clone();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let addresses = records
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .unwrap_or_default();
            let first = next;
            next += 1;
            let counted = counted.clone();
            tokio::spawn(async move {
                for offset in 0..addresses.len() {
                    let ip = addresses[(first + offset) % addresses.len()];
                    if let Ok(mut outbound) = TcpStream::connect((ip, port)).await {
                        let _ = outbound.set_nodelay(true);
                        *counted.lock().unwrap().entry(ip).or_default() += 1;
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        *counted.lock().unwrap().entry(ip).or_default() -= 1;
                        return;
                    }
                }
            });
        }
    });
    (addr, open)
}

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    instance: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    attributes: BTreeMap<String, String>,
}

fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| value.value.as_ref())
        .map(|value| match value {
            any_value::Value::StringValue(text) => text.clone(),
            any_value::Value::IntValue(number) => number.to_string(),
            any_value::Value::BoolValue(flag) => flag.to_string(),
            other => format!("{other:?}"),
        })
}

/// An OTLP/gRPC trace receiver: keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|resource| resource.attributes)
                .unwrap_or_default();
            let service = text_of(&resource, "service.name").unwrap_or_default();
            let instance = text_of(&resource, "service.instance.id").unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            Some((kv.key.clone(), text_of(&span.attributes, &kv.key)?))
                        })
                        .collect();
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        instance: instance.clone(),
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        name: span.name,
                        attributes,
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    /// A purchase's span chain: an inventory server span whose ancestors,
    /// all received, run through checkout up to the edge's root span.
    /// Answers the chain from the inventory span up, and the whole trace.
    fn edge_to_inventory_trace(&self) -> Option<(Vec<ReceivedSpan>, Vec<ReceivedSpan>)> {
        let spans = self.spans.lock().unwrap().clone();
        let by_id: HashMap<(&[u8], &[u8]), &ReceivedSpan> = spans
            .iter()
            .map(|span| ((&span.trace_id[..], &span.span_id[..]), span))
            .collect();
        for leaf in spans.iter().filter(|span| {
            span.service == "boxoffice-inventory"
                && span.name == "/boxoffice.inventory.v1.InventoryService/CommitHold"
        }) {
            let mut chain = vec![leaf.clone()];
            let mut at = leaf;
            while !at.parent_span_id.is_empty() && chain.len() < 64 {
                match by_id.get(&(&at.trace_id[..], &at.parent_span_id[..])) {
                    Some(parent) => {
                        chain.push((*parent).clone());
                        at = *parent;
                    }
                    None => break,
                }
            }
            let complete = at.parent_span_id.is_empty() && at.service == "boxoffice-edge";
            let services: BTreeSet<&str> = chain.iter().map(|span| span.service.as_str()).collect();
            if complete && services.contains("boxoffice-checkout") {
                let trace = spans
                    .iter()
                    .filter(|span| span.trace_id == leaf.trace_id)
                    .cloned()
                    .collect();
                return Some((chain, trace));
            }
        }
        None
    }
}

/// A failed call a buyer saw.
#[derive(Clone, Debug)]
struct Failure {
    call: &'static str,
    code: Code,
    reason: String,
}

fn reason_of(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// What a client retries: the instance or a dependency is unreachable
/// (UNAVAILABLE, whatever the reason), the same payment is still in
/// progress (ABORTED `CONFIRMATION_IN_PROGRESS`: again with the same key),
/// or a payment was interrupted with nothing charged (ABORTED
/// `CONFIRMATION_INTERRUPTED`: again with a new key).
fn retriable(code: Code, reason: &str) -> bool {
    code == Code::Unavailable
        || (code == Code::Aborted
            && [CONFIRMATION_IN_PROGRESS, CONFIRMATION_INTERRUPTED].contains(&reason))
}

/// Calls until an answer or a status a client does not retry; every
/// failure is recorded.
async fn retrying<T, F, Fut>(
    call: &'static str,
    failures: &Mutex<Vec<Failure>>,
    mut attempt: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(answer) => return Ok(answer),
            Err(status) => {
                let reason = reason_of(&status);
                failures.lock().unwrap().push(Failure {
                    call,
                    code: status.code(),
                    reason: reason.clone(),
                });
                // An interrupted payment is retried with a new key, by
                // the caller.
                if !retriable(status.code(), &reason)
                    || reason == CONFIRMATION_INTERRUPTED
                    || start.elapsed() > WAIT
                {
                    return Err(status);
                }
                // A client's back-off before it tries again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// One purchase of one seat: hold, book, pay (each step retried as a
/// client would, the booking and payment under idempotency keys). Answers
/// the booking id and its seat.
async fn purchase(
    edge: &Channel,
    token: &str,
    event_id: &str,
    key: &str,
    failures: &Mutex<Vec<Failure>>,
) -> Result<(Uuid, u32), Status> {
    let inventory = InventoryServiceClient::new(edge.clone());
    let checkout = CheckoutServiceClient::new(edge.clone());
    let hold = retrying("HoldSeats", failures, || {
        let request = with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity: 1,
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        );
        let mut inventory = inventory.clone();
        async move { inventory.hold_seats(request).await }
    })
    .await?
    .into_inner();
    let booking = retrying("CreateBooking", failures, || {
        let request = with_token(
            token,
            checkout_pb::CreateBookingRequest {
                hold: hold.name.clone(),
                idempotency_key: format!("{key}-book"),
            },
        );
        let mut checkout = checkout.clone();
        async move { checkout.create_booking(request).await }
    })
    .await?
    .into_inner();
    let mut payment = 0;
    let paid = loop {
        let payment_key = format!("{key}-pay{payment}");
        let answer = retrying("ConfirmBooking", failures, || {
            let request = with_token(
                token,
                checkout_pb::ConfirmBookingRequest {
                    name: booking.name.clone(),
                    payment_method: Some(checkout_pb::PaymentMethod {
                        token: "tok_visa".into(),
                        ..Default::default()
                    }),
                    idempotency_key: payment_key.clone(),
                },
            );
            let mut checkout = checkout.clone();
            async move { checkout.confirm_booking(request).await }
        })
        .await;
        match answer {
            Err(status)
                if status.code() == Code::Aborted
                    && reason_of(&status) == CONFIRMATION_INTERRUPTED
                    && payment < 20 =>
            {
                payment += 1;
            }
            answer => break answer?.into_inner(),
        }
    };
    assert_eq!(
        paid.state,
        checkout_pb::BookingState::Confirmed as i32,
        "{paid:?}"
    );
    let id = paid
        .name
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("a booking name ending in its id");
    let seat = paid.tickets.first().expect("one ticket").seat_index;
    Ok((id, seat))
}

/// `name{labels} value` lines of a Prometheus page, keyed by name+labels.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Inventory calls the edge sent to each instance address.
async fn edge_inventory_requests(admin: SocketAddr) -> BTreeMap<String, f64> {
    edge_inventory_series(admin, "boxoffice_edge_upstream_requests_total").await
}

/// Attempts at each inventory instance that failed, as the edge counts them.
async fn edge_inventory_failures(admin: SocketAddr) -> BTreeMap<String, f64> {
    edge_inventory_series(admin, "boxoffice_edge_upstream_failures_total").await
}

async fn edge_inventory_series(admin: SocketAddr, name: &str) -> BTreeMap<String, f64> {
    let Some((200, page)) = http_get(admin, "/metrics").await else {
        return BTreeMap::new();
    };
    let prefix = format!("{name}{{cluster=\"inventory\",endpoint=\"");
    samples(&page)
        .into_iter()
        .filter_map(|(key, value)| {
            let endpoint = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((endpoint.to_owned(), value))
        })
        .collect()
}

/// Creates a general-admission event through the edge (as an admin) and
/// waits until it is on sale.
async fn event_on_sale(edge: &Channel) -> String {
    let tokens = TokenConfig::from_vars(
        &BTreeMap::from([(ENV_JWT_SECRET.to_owned(), JWT_SECRET.to_owned())]),
        MissingSecret::Refuse,
    )
    .expect("token configuration");
    let (admin, _) = TokenIssuer::new(&tokens)
        .issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            &[boxoffice_contracts::role::ADMIN.to_owned()],
        )
        .expect("an admin token");
    standing_event_on_sale(edge, &admin, "Mesh Hall", "Mesh Night", CAPACITY)
        .await
        .id
}

/// A buyer of their own, registered and logged in through the edge.
async fn buyer(edge: &Channel, index: usize) -> String {
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let email = format!("mesh-{index}-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: format!("Buyer {index}"),
        })
        .await
        .expect("registering through the edge");
    login(&mut accounts, &email, "correct horse battery").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_go_on_while_an_inventory_instance_is_killed_and_replaced() {
    let db = TestDb::new().await;
    let redis = RedisCluster::start().await;
    let dns = TestDns::start().await;
    let receiver = Receiver::default();
    let otlp = receiver.start().await;
    let paysim = PaysimProcess::start().await;
    let env = MeshEnv {
        database_url: db.url.expose().to_owned(),
        redis_url: redis.url(),
        otlp_endpoint: format!("http://{otlp}"),
        logs: tempfile::tempdir().expect("a directory for the logs"),
    };

    let port = port_free_on_three_addresses();
    let instance = |host: u8| SocketAddr::from((loopback(host), port));
    dns.set(INVENTORY_NAME, &[loopback(1), loopback(2)]);
    let (inventory_service, checkout_connections) = cluster_ip(&dns, INVENTORY_NAME, port).await;
    let (catalog_addr, accounts_addr) =
        (crate::harness::spare_addr(), crate::harness::spare_addr());
    let (checkout_1, checkout_2, edge_addr) = (
        crate::harness::spare_addr(),
        crate::harness::spare_addr(),
        crate::harness::spare_addr(),
    );

    let inventory_env = |host: u8| {
        vec![
            ("BOXOFFICE_LISTEN", instance(host).to_string()),
            ("BOXOFFICE_MAX_HOLDS_PER_USER", "100".to_owned()),
        ]
    };
    let checkout_env = |listen: SocketAddr| {
        vec![
            ("BOXOFFICE_LISTEN", listen.to_string()),
            (
                "BOXOFFICE_INVENTORY_URL",
                format!("http://{inventory_service}"),
            ),
            ("BOXOFFICE_CATALOG_URL", format!("http://{catalog_addr}")),
            (
                "BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN",
                "127.0.0.1:0".to_owned(),
            ),
            ("BOXOFFICE_PAYMENTS_URL", paysim.url.clone()),
        ]
    };
    let mut catalog = env.spawn(
        "catalog",
        "catalog",
        &[("BOXOFFICE_LISTEN", catalog_addr.to_string())],
    );
    let mut accounts = env.spawn(
        "accounts",
        "accounts",
        &[("BOXOFFICE_LISTEN", accounts_addr.to_string())],
    );
    let mut inventory_1 = env.spawn("inventory", "inventory-1", &inventory_env(1));
    let mut inventory_2 = env.spawn("inventory", "inventory-2", &inventory_env(2));
    let mut checkout_a = env.spawn("checkout", "checkout-1", &checkout_env(checkout_1));
    let mut checkout_b = env.spawn("checkout", "checkout-2", &checkout_env(checkout_2));
    let mut edge_process = env.spawn(
        "edge",
        "edge",
        &[
            ("BOXOFFICE_LISTEN", edge_addr.to_string()),
            ("BOXOFFICE_EDGE_UPSTREAM_CATALOG", catalog_addr.to_string()),
            (
                "BOXOFFICE_EDGE_UPSTREAM_ACCOUNTS",
                accounts_addr.to_string(),
            ),
            (
                "BOXOFFICE_EDGE_UPSTREAM_CHECKOUT",
                format!("{checkout_1},{checkout_2}"),
            ),
            (
                "BOXOFFICE_EDGE_UPSTREAM_INVENTORY",
                format!("{INVENTORY_NAME}:{port}"),
            ),
            ("BOXOFFICE_EDGE_DNS_SERVER", dns.addr.to_string()),
            ("BOXOFFICE_EDGE_RESOLVE_INTERVAL_MS", "200".to_owned()),
            ("BOXOFFICE_EDGE_ACCESS_LOG", "off".to_owned()),
            ("BOXOFFICE_WEB_DIR", "off".to_owned()),
        ],
    );
    for process in [
        &mut catalog,
        &mut accounts,
        &mut inventory_1,
        &mut inventory_2,
        &mut checkout_a,
        &mut checkout_b,
    ] {
        process.ready(&env).await;
    }
    let edge_admin = edge_process.admin;
    eventually(WAIT, "the edge to serve", || async {
        http_get(edge_admin, "/metrics")
            .await
            .filter(|(status, _)| *status == 200)
            .map(|_| ())
    })
    .await;
    if let Ok(Some(status)) = edge_process.child.try_wait() {
        panic!("the edge exited ({status}):\n{}", env.log_of("edge"));
    }
    let edge = connect(edge_addr).await;
    let event_id = event_on_sale(&edge).await;
    let mut tokens = Vec::new();
    for index in 0..BUYERS {
        tokens.push(buyer(&edge, index).await);
    }

    // The load: each buyer buys one seat after another.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<Failure>::new()));
    let sold = Arc::new(Mutex::new(Vec::<(Uuid, u32)>::new()));
    let mut workers = Vec::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let (stop, failures, sold) = (stop.clone(), failures.clone(), sold.clone());
        let (edge, event_id) = (edge.clone(), event_id.clone());
        workers.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let key = format!("buyer{index}-round{round}");
                match purchase(&edge, &token, &event_id, &key, &failures).await {
                    Ok(sale) => sold.lock().unwrap().push(sale),
                    Err(status) => return Err(format!("{key}: {status:?}")),
                }
            }
            Ok(())
        }));
    }
    let purchases = || sold.lock().unwrap().len();
    let checkouts_on = |host| {
        checkout_connections
            .lock()
            .unwrap()
            .get(&loopback(host))
            .copied()
            .unwrap_or(0)
    };
    // Both instances busy, from the edge and from checkout: the kill
    // breaks connections that carry calls.
    eventually(WAIT, "purchases on both inventory instances", || async {
        let served = edge_inventory_requests(edge_admin).await;
        let busy = |host| {
            served
                .get(&instance(host).to_string())
                .is_some_and(|n| *n >= 5.0)
        };
        (busy(1) && busy(2) && checkouts_on(1) > 0 && purchases() >= 2 * BUYERS).then_some(())
    })
    .await;

    // kill -9 one inventory instance; a new one joins under the same name.
    inventory_1.kill9().await;
    let mut inventory_3 = env.spawn("inventory", "inventory-3", &inventory_env(3));
    inventory_3.ready(&env).await;
    // While the dead instance is still named (its counters leave with it).
    let edge_failures = edge_inventory_failures(edge_admin).await;
    dns.set(INVENTORY_NAME, &[loopback(2), loopback(3)]);
    let changed = Instant::now();
    let before = edge_inventory_requests(edge_admin).await;
    let at = |served: &BTreeMap<String, f64>, host| {
        served
            .get(&instance(host).to_string())
            .copied()
            .unwrap_or(0.0)
    };
    eventually(
        MOVE_WITHIN,
        "the edge to drop the dead instance and send calls to the new one",
        || async {
            let now = edge_inventory_requests(edge_admin).await;
            (!now.contains_key(&instance(1).to_string()) && at(&now, 3) >= at(&before, 3) + 5.0)
                .then_some(())
        },
    )
    .await;
    let moved = changed.elapsed();
    let after_move = purchases();
    eventually(WAIT, "purchases to go on after the move", || async {
        (purchases() >= after_move + 2 * BUYERS && checkouts_on(1) == 0).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        if let Err(failed) = worker.await.expect("a buyer task") {
            panic!("a purchase failed for good: {failed}");
        }
    }

    // Every call that failed failed with a status a client retries.
    let failures = failures.lock().unwrap().clone();
    let refused: Vec<&Failure> = failures
        .iter()
        .filter(|failure| !retriable(failure.code, &failure.reason))
        .collect();
    assert!(refused.is_empty(), "calls failed for good: {refused:?}");
    eprintln!(
        "moved within {moved:?}; {} purchases; checkout's connections to inventory now {:?}; \
         edge's failed attempts per instance {edge_failures:?}; failures clients retried: {:?}",
        purchases(),
        checkout_connections.lock().unwrap(),
        failures
            .iter()
            .map(|failure| format!("{} {:?} {}", failure.call, failure.code, failure.reason))
            .collect::<BTreeSet<_>>()
    );

    // No seat is sold twice, and every confirmed booking owns its seat in
    // inventory's table.
    let sold = sold.lock().unwrap().clone();
    let seats: BTreeSet<u32> = sold.iter().map(|(_, seat)| *seat).collect();
    assert_eq!(seats.len(), sold.len(), "a seat sold twice: {sold:?}");
    let client = db.client().await;
    let event: Uuid = event_id.parse().expect("an event id");
    let twice = client
        .query(
            "SELECT t.seat_index FROM checkout.booking_tickets t \
             JOIN checkout.bookings b ON b.id = t.booking_id \
             WHERE b.event_id = $1 AND b.state = 'confirmed' \
             GROUP BY t.seat_index HAVING count(*) > 1",
            &[&event],
        )
        .await
        .expect("reading confirmed tickets");
    assert!(twice.is_empty(), "seats of two confirmed bookings");
    let unowned: i64 = client
        .query_one(
            "SELECT count(*) FROM checkout.booking_tickets t \
             JOIN checkout.bookings b ON b.id = t.booking_id \
             WHERE b.event_id = $1 AND b.state = 'confirmed' AND NOT EXISTS ( \
               SELECT 1 FROM inventory.tickets i WHERE i.event_id = b.event_id \
               AND i.seat_index = t.seat_index AND i.status = 'sold' AND i.booking_id = b.id)",
            &[&event],
        )
        .await
        .expect("matching tickets to inventory")
        .get(0);
    assert_eq!(unowned, 0, "confirmed tickets inventory did not sell");
    let confirmed: i64 = client
        .query_one(
            "SELECT count(*) FROM checkout.bookings WHERE event_id = $1 AND state = 'confirmed'",
            &[&event],
        )
        .await
        .expect("counting confirmed bookings")
        .get(0);
    assert!(
        confirmed as usize >= sold.len(),
        "{confirmed} < {}",
        sold.len()
    );
    for (booking, seat) in &sold {
        let row = client
            .query_one(
                "SELECT booking_id FROM inventory.tickets WHERE event_id = $1 AND seat_index = $2",
                &[&event, &(*seat as i32)],
            )
            .await
            .expect("the sold ticket");
        assert_eq!(row.get::<_, Option<Uuid>>(0), Some(*booking));
    }

    // One purchase's trace: edge → checkout → inventory, with parent links.
    let (chain, trace) = eventually(WAIT, "a trace from the edge into inventory", || async {
        receiver.edge_to_inventory_trace()
    })
    .await;
    let processes: BTreeSet<&str> = chain.iter().map(|span| span.instance.as_str()).collect();
    assert!(processes.len() >= 3, "{chain:#?}");
    let root = chain.last().expect("a root");
    assert_eq!(
        root.name, "/boxoffice.checkout.v1.CheckoutService/ConfirmBooking",
        "{chain:#?}"
    );
    let kinds: BTreeSet<(&str, &str)> = chain
        .iter()
        .map(|span| (span.service.as_str(), span.name.as_str()))
        .collect();
    assert!(
        kinds.contains(&(
            "boxoffice-checkout",
            "/boxoffice.checkout.v1.CheckoutService/ConfirmBooking"
        )),
        "checkout's server span in the chain: {chain:#?}"
    );
    let has = |service: &str, system: &str| {
        trace.iter().any(|span| {
            span.service == service
                && span.attributes.get("db.system").map(String::as_str) == Some(system)
        })
    };
    assert!(has("boxoffice-inventory", "postgresql"), "{trace:#?}");
    assert!(has("boxoffice-checkout", "postgresql"), "{trace:#?}");
    assert!(
        trace
            .iter()
            .any(|span| span.service == "boxoffice-checkout" && span.name == "payment provider"),
        "the payment provider's call in the trace: {trace:#?}"
    );
    // A hold's own trace reaches Redis.
    assert!(
        receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|span| span.service == "boxoffice-inventory"
                && span.attributes.get("db.system").map(String::as_str) == Some("redis")),
        "inventory's Redis spans"
    );
}
