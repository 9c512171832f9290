//! `boxoffice-faults`: runs boxoffice under faults and checks what it
//! promised (see the library's documentation). Exits 0 when every check
//! passes, 1 when one fails, 2 when the run itself could not be made.
//!
//! `cargo run --release -p boxoffice-faults -- --duration 20m`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_faults::history::FaultKind;
use boxoffice_faults::{Options, run};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "boxoffice-faults",
    about = "Fault harness: buyers through the edge, a nemesis killing and pausing Redis, PostgreSQL, the payment simulator and boxoffice, and a checker"
)]
struct Cli {
    /// How long the clients run, e.g. 90s, 10m, 1h (at least one cycle of
    /// every fault runs whatever this says).
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    duration: Duration,
    /// The short run's settings (every fault once, about two minutes),
    /// as `cargo test -p boxoffice-faults` makes it.
    #[arg(long)]
    short: bool,
    /// Concurrent buyers (default: 24, or 10 with --short).
    #[arg(long)]
    buyers: Option<usize>,
    /// The boxoffice binary to run; default: `boxoffice-faults-system` next
    /// to this executable (built first when run through cargo).
    #[arg(long)]
    boxoffice: Option<PathBuf>,
    /// Where the history, logs and report go; default target/faults/<time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these faults, comma-separated: redis-kill, redis-pause,
    /// pg-stop-imm, pg-kill, pg-pause, box-kill, box-pause, paysim-kill,
    /// paysim-pause; "none" for a
    /// run without faults (default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
    faults: Option<Vec<Option<FaultKind>>>,
    /// Domain events through the NATS server at this URL (the run's own
    /// JetStream stream, deleted afterwards), e.g. nats://127.0.0.1:4222.
    #[arg(long)]
    nats: Option<String>,
}

fn parse_fault(raw: &str) -> Result<Option<FaultKind>, String> {
    if raw == "none" {
        return Ok(None);
    }
    FaultKind::from_short(raw)
        .map(Some)
        .ok_or_else(|| format!("'{raw}' is not a fault (see --help)"))
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration like 90s, 20m or 1h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" | "min" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("'{raw}' is not a duration like 90s, 20m or 1h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// `boxoffice-faults-system` beside this executable. Under `cargo run` it
/// is built first (cargo builds only the binary it runs), with the same
/// profile and package selection, so nothing else is rebuilt.
fn default_boxoffice() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let system = dir.join("boxoffice-faults-system");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut command = std::process::Command::new(cargo);
        command.args([
            "build",
            "-p",
            "boxoffice-faults",
            "--bin",
            "boxoffice-faults-system",
        ]);
        match dir.file_name().and_then(|name| name.to_str()) {
            Some("release") => {
                command.arg("--release");
            }
            Some("debug") => {}
            Some(profile) => {
                command.args(["--profile", profile]);
            }
            None => {}
        }
        eprintln!("boxoffice-faults: building boxoffice-faults-system");
        let status = command.status().context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build of the system failed");
    }
    anyhow::ensure!(
        system.exists(),
        "{} does not exist: build it (cargo build -p boxoffice-faults --bins) or pass --boxoffice",
        system.display()
    );
    Ok(system)
}

fn default_out(exe_dir: Option<&Path>) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    // target/<profile>/boxoffice-faults → target/faults/<stamp>
    let target = exe_dir
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("faults").join(stamp)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let boxoffice = match cli.boxoffice.map(Ok).unwrap_or_else(default_boxoffice) {
        Ok(path) => path,
        Err(error) => {
            eprintln!("boxoffice-faults: {error:#}");
            return ExitCode::from(2);
        }
    };
    let exe = std::env::current_exe().ok();
    let out = cli
        .out
        .unwrap_or_else(|| default_out(exe.as_deref().and_then(Path::parent)));
    let mut options = if cli.short {
        Options::short(boxoffice, out.clone())
    } else {
        Options::long(boxoffice, out.clone(), cli.duration)
    };
    if let Some(buyers) = cli.buyers {
        options.workload.buyers = buyers;
    }
    options.nats_url = cli.nats;
    if let Some(faults) = cli.faults {
        options.nemesis.kinds = faults.into_iter().flatten().collect();
    }
    eprintln!(
        "boxoffice-faults: running {} s of clients; history and logs in {}",
        options.duration.as_secs(),
        out.display()
    );
    // Ctrl-C drops the run, and with it every process it started.
    let result = tokio::select! {
        result = run(&options) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("boxoffice-faults: interrupted; stopping every process");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(report) => {
            println!("{}", report.text);
            println!(
                "history, logs, report.txt, timeline.svg and timeline.png: {}",
                out.display()
            );
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("boxoffice-faults: the run could not be made: {error:#}");
            ExitCode::from(2)
        }
    }
}
