//! The baselines measured in the same run as the scenarios, because absolute
//! figures drift on a shared machine: `redis-benchmark` running inventory's
//! own hold script by `EVALSHA`, and `pgbench` running a sale of two seats
//! with the same kind of conditional update CommitHold uses.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_inventory::store::redis::baseline::{HOLD_SCRIPT, event_keys};
use uuid::Uuid;

/// What a baseline tool reported.
#[derive(Debug, Clone, Copy)]
pub struct BaselineResult {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU milliseconds the whole machine spent per operation during the
    /// run (every process: the tool itself and the server it drives).
    pub cpu_ms_per_op: Option<f64>,
}

impl BaselineResult {
    /// The mean of two runs of one baseline (say, one before and one after
    /// the scenarios it is compared with).
    pub fn mean(first: &Self, second: &Self) -> Self {
        Self {
            per_second: (first.per_second + second.per_second) / 2.0,
            p50_ms: (first.p50_ms + second.p50_ms) / 2.0,
            p99_ms: (first.p99_ms + second.p99_ms) / 2.0,
            cpu_ms_per_op: first
                .cpu_ms_per_op
                .zip(second.cpu_ms_per_op)
                .map(|(a, b)| (a + b) / 2.0),
        }
    }
}

fn redis_cli(redis_url: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .arg("-u")
        .arg(redis_url)
        .args(args)
        .output()
        .context("running redis-cli (install redis-tools)")?;
    anyhow::ensure!(
        output.status.success(),
        "redis-cli failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Successful 4-seat holds per second when `redis-benchmark` runs the hold
/// script directly (no gRPC, no service): the ceiling HoldSeats is compared
/// with. Seats are drawn from a huge range so holds succeed, as HoldSeats'
/// successful holds do.
pub fn redis_hold_script(
    redis_url: &str,
    prefix: &str,
    requests: u64,
    clients: u32,
) -> anyhow::Result<BaselineResult> {
    let sha = redis_cli(redis_url, &["SCRIPT", "LOAD", HOLD_SCRIPT])?;
    let keys = event_keys(prefix, Uuid::new_v4());
    redis_cli(
        redis_url,
        &[
            "HSET",
            &keys[0],
            "status",
            "open",
            "on_sale_ms",
            "0",
            "seat_count",
            "1000000000",
            "epoch",
            "1",
        ],
    )?;
    let host_port = redis_url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let (host, port) = host_port.rsplit_once(':').unwrap_or(("127.0.0.1", "6379"));
    let mut command = Command::new("redis-benchmark");
    command
        .args([
            "-h",
            host,
            "-p",
            port,
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
        ])
        .args(["-r", "1000000000", "--csv", "EVALSHA", &sha, "8"])
        .args(&keys)
        .args([
            "h__rand_int__",
            "o__rand_int__",
            "600000",
            "1000000",
            "1000",
            "60000",
            "0",
            "EUR",
            // No tier groups: a fixed-price hold; no maximum price.
            "",
            "",
        ])
        .args([
            "__rand_int__",
            "__rand_int__",
            "__rand_int__",
            "__rand_int__",
        ]);
    let busy_before = crate::cpu::busy();
    let output = command
        .output()
        .context("running redis-benchmark (install redis-tools)")?;
    let busy_after = crate::cpu::busy();
    anyhow::ensure!(
        output.status.success(),
        "redis-benchmark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut result = parse_redis_benchmark_csv(&stdout).context("reading redis-benchmark's csv")?;
    result.cpu_ms_per_op = crate::cpu::ms_per_operation(busy_before, busy_after, requests);
    Ok(result)
}

fn parse_redis_benchmark_csv(csv: &str) -> Option<BaselineResult> {
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let line = csv
        .lines()
        .find(|line| !line.starts_with("\"test\"") && line.contains(','))?;
    let fields: Vec<f64> = line
        .rsplitn(8, ',')
        .map(|field| field.trim_matches('"').parse::<f64>().unwrap_or(f64::NAN))
        .collect();
    // rsplitn yields from the right: max, p99, p95, p50, min, avg, rps, test.
    Some(BaselineResult {
        per_second: *fields.get(6)?,
        p50_ms: *fields.get(3)?,
        p99_ms: *fields.get(1)?,
        cpu_ms_per_op: None,
    })
}

/// Runs `sql` with `psql` on `database` (local PostgreSQL, user postgres).
fn psql(database: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-qc",
            sql,
        ])
        .status()
        .context("running psql")?;
    anyhow::ensure!(status.success(), "psql failed");
    Ok(())
}

/// Two-seat sales per second when `pgbench` runs a conditional sale straight
/// against PostgreSQL (synchronous commit on): lock the tickets, check they
/// are all available and the lease is valid, flip them all or none. A fresh
/// event of `seats` tickets is made for it so every sale succeeds.
pub fn pgbench_sale(
    database: &str,
    seats: u32,
    clients: u32,
    duration: Duration,
) -> anyhow::Result<BaselineResult> {
    let event_id = Uuid::new_v4();
    let setup = format!(
        "INSERT INTO inventory.events (event_id, venue_id, status, seat_count, currency_code, layout, catalog_version)
         VALUES ('{event_id}', '{event_id}', 'on_sale', {seats}, 'EUR', '{{}}', 1);
         INSERT INTO inventory.tickets (event_id, seat_index, section_id)
         SELECT '{event_id}', s, '{event_id}' FROM generate_series(0, {seats} - 1) s;
         DROP SEQUENCE IF EXISTS public.bench_sales; CREATE SEQUENCE public.bench_sales;"
    );
    psql(database, &setup).context("preparing the pgbench event")?;
    // Start from a checkpoint, as the scenarios it is compared with do, so
    // neither pays for one that writing the setup's rows made due.
    psql(database, "CHECKPOINT").context("checkpointing before pgbench")?;
    let script = format!(
        "WITH params AS (
             SELECT ARRAY[((n * 2) % {seats})::int4, ((n * 2 + 1) % {seats})::int4] AS seats,
                    gen_random_uuid() AS booking_id, now() + interval '10 minutes' AS expires_at
             FROM (SELECT nextval('public.bench_sales') AS n) s
         ),
         locked AS (
             SELECT t.seat_index, t.status FROM inventory.tickets t, params p
             WHERE t.event_id = '{event_id}' AND t.seat_index = ANY(p.seats)
             ORDER BY t.seat_index FOR UPDATE OF t
         ),
         counts AS (SELECT count(*) FILTER (WHERE status = 'available') AS free FROM locked),
         checks AS (
             SELECT (p.expires_at - 5000 * interval '1 millisecond') > now() AS lease_ok,
                    (SELECT status = 'on_sale' FROM inventory.events WHERE event_id = '{event_id}') AS on_sale
             FROM params p
         )
         UPDATE inventory.tickets t
         SET status = 'sold', booking_id = p.booking_id, hold_id = p.booking_id, version = t.version + 1, sold_at = now()
         FROM counts, checks, params p
         WHERE t.event_id = '{event_id}' AND t.seat_index = ANY(p.seats) AND t.status = 'available'
           AND counts.free = cardinality(p.seats) AND checks.lease_ok AND checks.on_sale;"
    )
    .replace('\n', " ")
        + "\n";
    let path = std::env::temp_dir().join(format!("boxoffice-sale-{}.sql", Uuid::new_v4().simple()));
    std::fs::write(&path, script)?;
    let binary = [
        "pgbench",
        "/usr/lib/postgresql/15/bin/pgbench",
        "/usr/lib/postgresql/16/bin/pgbench",
    ]
    .into_iter()
    .find(|binary| Command::new(binary).arg("--version").output().is_ok())
    .context("pgbench is not installed (it comes with PostgreSQL's server packages)")?;
    let busy_before = crate::cpu::busy();
    let output = Command::new(binary)
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-M",
            "prepared",
            "-r",
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &duration.as_secs().max(1).to_string(),
        ])
        .arg("-f")
        .arg(&path)
        .arg(database)
        .output()
        .context("running pgbench")?;
    let busy_after = crate::cpu::busy();
    let _ = std::fs::remove_file(&path);
    // Clean up after itself now, so autovacuum does not do it during
    // whatever is measured next.
    psql(database, "VACUUM inventory.tickets").context("vacuuming after pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let number_after = |label: &str| {
        stdout
            .lines()
            .find(|line| line.contains(label))
            .and_then(|line| line.split('=').nth(1))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    let tps = number_after("tps").context("no tps in pgbench output")?;
    let average = number_after("latency average").unwrap_or(0.0);
    // "number of transactions actually processed: 81234" (or "81234/100000").
    let processed = stdout
        .lines()
        .find(|line| line.contains("actually processed"))
        .and_then(|line| line.rsplit(':').next())
        .and_then(|value| value.trim().split('/').next())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(BaselineResult {
        per_second: tps,
        p50_ms: average,
        p99_ms: f64::NAN,
        cpu_ms_per_op: crate::cpu::ms_per_operation(busy_before, busy_after, processed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"EVALSHA abc 8 k1,k2\",\"5600.00\",\"1.700\",\"0.300\",\"1.600\",\"2.900\",\"4.100\",\"9.000\"\n";
        let result = parse_redis_benchmark_csv(csv).unwrap();
        assert_eq!(result.per_second, 5600.0);
        assert_eq!(result.p50_ms, 1.6);
        assert_eq!(result.p99_ms, 4.1);
    }
}
