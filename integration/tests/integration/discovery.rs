//! The edge finding a cluster's instances by DNS: a real DNS server (UDP,
//! answering A records the test changes) names three instances on three
//! loopback addresses, as a Kubernetes headless Service names its pods.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_accounts::TokenConfig;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_edge::config::DiscoveryConfig;
use tokio::net::UdpSocket;

use crate::edge_world::{connect, edge_config, start_edge, start_upstream};
use crate::harness::{KillableProxy, TestDb, eventually};

const WAIT: Duration = Duration::from_secs(30);
const NAME: &str = "catalog.boxoffice.test";

/// A DNS server answering A questions from a table the test edits (also
/// the mesh test's).
pub struct TestDns {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<BTreeMap<String, Vec<Ipv4Addr>>>>,
}

impl TestDns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binding DNS");
        let addr = socket.local_addr().expect("DNS address");
        let records: Arc<Mutex<BTreeMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let table = records.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok((read, from)) = socket.recv_from(&mut buffer).await {
                let answered = answer(&buffer[..read], &table.lock().unwrap());
                if let Some(answer) = answered {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Self { addr, records }
    }

    pub fn set(&self, name: &str, addresses: &[Ipv4Addr]) {
        self.records
            .lock()
            .unwrap()
            .insert(name.to_owned(), addresses.to_vec());
    }
}

/// The answer to one question: its A records, or NXDOMAIN.
fn answer(query: &[u8], table: &BTreeMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let (mut at, mut labels) = (12, Vec::new());
    loop {
        let length = *query.get(at)? as usize;
        at += 1;
        if length == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + length)?).into_owned());
        at += length;
    }
    let question_end = at + 4;
    let name = labels.join(".").to_ascii_lowercase();
    let found = table.get(&name);
    let mut packet = query[..question_end.min(query.len())].to_vec();
    packet[2] = 0x81; // a response, recursion desired
    packet[3] = if found.is_some() { 0x80 } else { 0x83 };
    let records = found.cloned().unwrap_or_default();
    packet[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    packet[8..12].fill(0);
    for address in records {
        // The name as a pointer to the question's; A, IN, TTL 1 s.
        packet.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        packet.extend_from_slice(&address.octets());
    }
    Some(packet)
}

/// One port free on 127.0.0.1, .2 and .3: proxies to `target` on each.
async fn three_instances(target: SocketAddr) -> (u16, Vec<KillableProxy>) {
    for _ in 0..50 {
        let first = KillableProxy::start(target).await;
        let port = first.addr.port();
        let mut proxies = vec![first];
        for host in [2, 3] {
            let bind = SocketAddr::from(([127, 0, 0, host], port));
            if let Some(proxy) = KillableProxy::start_on(bind, target).await {
                proxies.push(proxy);
            }
        }
        if proxies.len() == 3 {
            return (port, proxies);
        }
    }
    panic!("no port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_edge_follows_a_dns_name_as_instances_come_and_go() {
    let db = TestDb::new().await;
    let tokens = TokenConfig::ephemeral();
    let upstream = start_upstream(&db, &tokens).await;
    let (port, _instances) = three_instances(upstream.server.addr).await;
    let ip = |host: u8| Ipv4Addr::new(127, 0, 0, host);
    let dns = TestDns::start().await;
    dns.set(NAME, &[ip(1)]);

    let mut config = edge_config(&[upstream.server.addr]);
    config
        .clusters
        .get_mut("catalog")
        .expect("catalog cluster")
        .endpoints = vec![format!("{NAME}:{port}")];
    config.discovery = DiscoveryConfig {
        interval: Duration::from_millis(200),
        dns_server: Some(dns.addr),
    };
    let edge = start_edge(config, &tokens).await;
    let store = boxoffice_catalog::store::CatalogStore::new(db.pool.clone());
    boxoffice_catalog::seed::seed_if_empty(&store, 2)
        .await
        .expect("seeding");
    let channel = connect(edge.addr).await;
    let event_id = pb::catalog_service_client::CatalogServiceClient::new(channel.clone())
        .list_events(pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("listing through the edge")
        .into_inner()
        .events
        .remove(0)
        .id;

    // Requests per instance address, as the edge counts them.
    let served = || -> BTreeMap<String, u64> {
        edge.handle
            .endpoints()
            .into_iter()
            .filter(|stats| stats.cluster == "catalog")
            .map(|stats| (stats.endpoint, stats.requests))
            .collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, failures) = (stop.clone(), failures.clone());
        let mut client = pb::catalog_service_client::CatalogServiceClient::new(channel.clone());
        let id = event_id.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Err(status) = client
                    .get_event(pb::GetEventRequest { id: id.clone() })
                    .await
                {
                    failures.lock().unwrap().push(format!(
                        "{:?}: {}",
                        status.code(),
                        status.message()
                    ));
                }
            }
        }));
    }
    let address = |host: u8| format!("127.0.0.{host}:{port}");

    eventually(WAIT, "the name's one instance to serve", || async {
        let now = served();
        (now.len() == 1 && now.get(&address(1)).is_some_and(|n| *n > 20)).then_some(())
    })
    .await;

    // The name grows to three addresses: new calls spread over all three.
    dns.set(NAME, &[ip(1), ip(2), ip(3)]);
    eventually(WAIT, "calls to reach all three instances", || async {
        let now = served();
        (now.len() == 3 && now.values().all(|n| *n > 20)).then_some(())
    })
    .await;

    // One address goes away: it leaves the list, and no call fails.
    dns.set(NAME, &[ip(1), ip(2)]);
    eventually(WAIT, "the removed address to leave the list", || async {
        (!served().contains_key(&address(3))).then_some(())
    })
    .await;
    let after_removal = served();
    eventually(WAIT, "traffic to carry on over the two left", || async {
        let now = served();
        let more = |a: &str| now.get(a).copied().unwrap_or(0) > after_removal[a] + 50;
        (more(&address(1)) && more(&address(2))).then_some(())
    })
    .await;

    // A name that stops resolving keeps the instances the edge has.
    dns.records.lock().unwrap().clear();
    let before_outage = served();
    eventually(
        WAIT,
        "calls to go on while the name does not resolve",
        || async {
            let now = served();
            let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
            (now.len() == 2 && total(&now) > total(&before_outage) + 200).then_some(())
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "calls failed: {failures:?}");
}
