//! `boxoffice-paysim`: a payment provider simulator that speaks the Stripe
//! PaymentIntents HTTP API (form-encoded requests, JSON answers, Bearer
//! secret keys, `Idempotency-Key`, search by metadata, refunds, webhook
//! endpoints and `Stripe-Signature` webhooks), runs as its own process and
//! keeps its ledger in an fsynced append-only journal, so killing it (or
//! the process that pays through it) loses no payment.
//!
//! Beside it, the part of PayPal's REST API a merchant integration uses
//! (OAuth2 client credentials, Orders v2 with intent `AUTHORIZE` and the
//! buyer's approval page `/checkoutnow`, Payments v2 capture / void /
//! refund, Transaction Search, webhooks verified through
//! `verify-webhook-signature`), on the same ledger: see `paypal.rs`.
//!
//! Test payment methods behave like Stripe's: `tok_chargeDeclined…`
//! decline, `tok_threeDSecure2Required` answers `requires_action` with a
//! page the buyer authenticates on (`/authenticate/{id}`), anything else
//! authorizes.

mod api;
pub mod config;
pub mod ledger;
mod paypal;
mod webhooks;

pub use api::Paysim;
pub use config::PaysimConfig;

/// Exit code for configuration a process cannot start with.
const EXIT_BAD_CONFIG: u8 = 64;

/// Runs the simulator from the environment until SIGTERM/SIGINT: what the
/// `boxoffice-paysim` binary and `boxoffice paysim` do.
pub fn main_with_env() -> std::process::ExitCode {
    let config = match PaysimConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("boxoffice-paysim: bad configuration: {error}");
            return std::process::ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime_config = match boxoffice_runtime::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("boxoffice-paysim: bad configuration: {error}");
            return std::process::ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("boxoffice-paysim: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let telemetry = boxoffice_runtime::telemetry::Telemetry::init(&runtime_config)?;
        let result = serve(config).await;
        telemetry.shutdown();
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("boxoffice-paysim: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the simulator prints, followed by its URL, once it listens.
pub const LISTENING_ON: &str = "boxoffice-paysim listening on ";

/// Starts a simulator process from `command` (a binary that runs
/// [`main_with_env`], with its settings in the environment) and answers it
/// with its URL once it listens: what `boxoffice up`, the integration tests
/// and the benchmarks start their gateway with. Its stdout is read to the
/// end in the background, so it never blocks on a full pipe; it is killed
/// when the child handle is dropped.
pub async fn start_process(
    mut command: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, String)> {
    use anyhow::Context as _;
    use tokio::io::AsyncBufReadExt as _;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the payment simulator")?;
    let stdout = child
        .stdout
        .take()
        .context("the payment simulator has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix(LISTENING_ON) {
                return Ok(url.trim().to_owned());
            }
        }
        anyhow::bail!("the payment simulator stopped before listening (see its log above)")
    })
    .await
    .context("the payment simulator did not start within 20 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// What the buyer's browser sends from one of the simulator's pages for the
/// buyer (PayPal's approval page, a card's 3-D Secure page): the form with
/// the buyer's choice, `outcome` (`approve`, `decline` or `cancel` at
/// PayPal; `approve` or `fail` for 3-D Secure). For the tests and benchmarks
/// that play the buyer.
pub async fn answer_buyer_page(
    http: &reqwest::Client,
    url: &str,
    outcome: &str,
) -> reqwest::Result<reqwest::Response> {
    http.post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("outcome={outcome}"))
        .send()
        .await
}

/// Binds, prints the address it listens on ([`LISTENING_ON`], for
/// whoever started it with port 0) and serves until SIGTERM/SIGINT.
pub async fn serve(config: PaysimConfig) -> anyhow::Result<()> {
    if let Some(parent) = config.parent_pid {
        // Dies with the process that started it, so no orphan keeps the
        // ledger (a second simulator on it is refused anyway: it is locked).
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
            .map_err(|error| anyhow::anyhow!("setting the parent-death signal: {error}"))?;
        let now = rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get());
        anyhow::ensure!(
            now == parent,
            "the process that started the simulator is gone"
        );
    }
    let shutdown = boxoffice_runtime::Shutdown::on_signals();
    let paysim = Paysim::bind(config).await?;
    println!("{LISTENING_ON}{}", paysim.url());
    paysim.run_until_stopped(shutdown).await;
    Ok(())
}
