//! The whole machine's CPU time, read from `/proc/stat`, so a benchmark can
//! say what one operation cost in CPU across every process it touched (the
//! load generator, the services, PostgreSQL, Redis). Throughput on a shared
//! machine drifts with its neighbours; CPU time per operation drifts much
//! less, so it is the steadier figure to compare two builds or a scenario
//! with its baseline.

use std::time::Duration;

/// Busy CPU time since boot, every core together: user, nice, system, irq
/// and softirq. Idle and I/O wait are not work; steal is another guest's.
/// `None` where `/proc/stat` cannot be read (not Linux).
pub fn busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_busy(&stat, clock_ticks_per_second())
}

/// The kernel's `USER_HZ`: 100 on every Linux architecture a server runs.
fn clock_ticks_per_second() -> u64 {
    100
}

fn parse_busy(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy_ticks: u64 = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum();
    Some(Duration::from_millis(busy_ticks * 1000 / ticks_per_second))
}

/// CPU milliseconds per operation between two [`busy`] readings.
pub fn ms_per_operation(
    before: Option<Duration>,
    after: Option<Duration>,
    operations: u64,
) -> Option<f64> {
    let spent = after?.checked_sub(before?)?;
    (operations > 0).then(|| spent.as_secs_f64() * 1000.0 / operations as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_counts_work_and_leaves_out_idle_and_steal() {
        let stat = "cpu  100 20 30 5000 40 6 4 900 0 0\ncpu0 50 10 15 2500 20 3 2 450 0 0\n";
        // 100 + 20 + 30 + 6 + 4 = 160 ticks = 1.6 s.
        assert_eq!(parse_busy(stat, 100), Some(Duration::from_millis(1600)));
    }

    #[test]
    fn cost_per_operation_is_the_difference_over_the_count() {
        let before = Some(Duration::from_secs(10));
        let after = Some(Duration::from_secs(12));
        assert_eq!(ms_per_operation(before, after, 4000), Some(0.5));
        assert_eq!(ms_per_operation(before, after, 0), None);
        assert_eq!(ms_per_operation(None, after, 10), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn spinning_shows_up_as_busy_time() {
        let first = busy().expect("/proc/stat is readable on Linux");
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let second = busy().expect("/proc/stat is readable on Linux");
        assert!(
            second.saturating_sub(first) >= Duration::from_millis(100),
            "300 ms of spinning counted as {:?} of busy time",
            second.saturating_sub(first)
        );
    }
}
