//! `boxoffice-load`: the load generator and benchmark report of boxoffice.
//!
//! `boxoffice-load suite` starts a whole system in-process on a database of
//! its own, runs the standard scenarios next to their baselines, prints a
//! table with the ratios and writes JSON and SVG plots under
//! `target/bench-report/`.

use std::path::PathBuf;
use std::time::Duration;

use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::testing::v1 as echo_pb;
use clap::{Parser, Subcommand};

use boxoffice_benches::load::{self, LoadSpec, Mode, Outcome, Recording};
use boxoffice_benches::report::{Machine, Ratio, Report};
use boxoffice_benches::system::{System, channels};

#[derive(Parser)]
#[command(name = "boxoffice-load", about = "Load generator and benchmark report for boxoffice")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The standard suite: every scenario next to its baseline.
    Suite {
        /// Measured seconds per scenario.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Unmeasured seconds before each scenario.
        #[arg(long, default_value_t = 2)]
        warmup_secs: u64,
        /// Requests in flight for closed-loop scenarios.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Arrival rate (requests/s) of the open-loop scenarios.
        #[arg(long, default_value_t = 5000.0)]
        open_rate: f64,
        /// Where the report goes.
        #[arg(long, default_value = "target/bench-report")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Suite {
            duration_secs,
            warmup_secs,
            concurrency,
            open_rate,
            out,
        } => {
            let settings = Settings {
                duration: Duration::from_secs(duration_secs),
                warmup: Duration::from_secs(warmup_secs),
                concurrency,
                open_rate,
            };
            suite(&settings, &out).await
        }
    }
}

struct Settings {
    duration: Duration,
    warmup: Duration,
    concurrency: usize,
    open_rate: f64,
}

impl Settings {
    fn closed(&self, name: &str) -> LoadSpec {
        LoadSpec {
            name: name.to_owned(),
            mode: Mode::Closed {
                concurrency: self.concurrency,
            },
            warmup: self.warmup,
            duration: self.duration,
            max_requests: None,
        }
    }
}

fn outcome<T>(result: Result<T, tonic::Status>) -> Outcome {
    result.map(|_| ()).map_err(|status| status.code())
}

async fn suite(settings: &Settings, out: &std::path::Path) -> anyhow::Result<()> {
    let system = System::start().await?;
    let mut recordings: Vec<Recording> = Vec::new();

    // Baseline: the cheapest possible gRPC call on this machine, now.
    let echo_channels = channels(system.echo_addr, 2).await?;
    recordings.push(
        load::run(&settings.closed("echo (baseline)"), move |n| {
            let mut client =
                echo_pb::echo_service_client::EchoServiceClient::new(echo_channels[n as usize % echo_channels.len()].clone());
            async move {
                outcome(
                    client
                        .echo(echo_pb::EchoRequest {
                            message: "ping".to_owned(),
                        })
                        .await,
                )
            }
        })
        .await,
    );

    // Cached GetEvent straight to the catalog, over the demo events.
    let catalog_channels = channels(system.catalog_addr, 2).await?;
    let event_ids = demo_event_ids(&catalog_channels[0]).await?;
    recordings.push(
        load::run(&settings.closed("catalog.GetEvent (cached)"), move |n| {
            let mut client = catalog_pb::catalog_service_client::CatalogServiceClient::new(
                catalog_channels[n as usize % catalog_channels.len()].clone(),
            );
            let id = event_ids[n as usize % event_ids.len()].clone();
            async move { outcome(client.get_event(catalog_pb::GetEventRequest { id }).await) }
        })
        .await,
    );

    // The same call at a fixed arrival rate: latency as a visitor sees it
    // when the load does not politely wait for answers.
    let open_channels = channels(system.catalog_addr, 2).await?;
    let open_ids = demo_event_ids(&open_channels[0]).await?;
    recordings.push(
        load::run(
            &LoadSpec {
                name: "catalog.GetEvent open loop".to_owned(),
                mode: Mode::Open {
                    rate: settings.open_rate,
                    max_in_flight: 256,
                },
                warmup: settings.warmup,
                duration: settings.duration,
                max_requests: None,
            },
            move |n| {
                let mut client = catalog_pb::catalog_service_client::CatalogServiceClient::new(
                    open_channels[n as usize % open_channels.len()].clone(),
                );
                let id = open_ids[n as usize % open_ids.len()].clone();
                async move { outcome(client.get_event(catalog_pb::GetEventRequest { id }).await) }
            },
        )
        .await,
    );

    let scenarios: Vec<_> = recordings.iter().map(Recording::summary).collect();
    let rate = |name: &str| {
        scenarios
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.requests_per_sec)
            .unwrap_or(0.0)
    };
    let ratios = vec![Ratio {
        scenario: "catalog.GetEvent (cached)".to_owned(),
        baseline: "echo (baseline)".to_owned(),
        ratio: rate("catalog.GetEvent (cached)") / rate("echo (baseline)").max(1e-9),
        target: Some(0.6),
    }];
    let report = Report {
        machine: Machine::detect(),
        scenarios,
        ratios,
        checks: Vec::new(),
    };
    println!("{}", report.table());
    report.write(out)?;
    println!("report written to {}", out.display());
    system.stop().await
}

/// Published demo events to read, in a fixed order.
async fn demo_event_ids(channel: &tonic::transport::Channel) -> anyhow::Result<Vec<String>> {
    let mut client = catalog_pb::catalog_service_client::CatalogServiceClient::new(channel.clone());
    let page = client
        .list_events(catalog_pb::ListEventsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner();
    anyhow::ensure!(!page.events.is_empty(), "the demo data has no published events");
    Ok(page.events.into_iter().map(|event| event.id).collect())
}
