//! The load engine: closed-loop (fixed concurrency) and open-loop (fixed
//! arrival rate) runs with warm-up, bounds on time and count, a progress
//! line, and HDR histograms of latency overall and per second.
//!
//! Open-loop latency is measured from when a request was *due*, not when it
//! was sent, so a stalled server cannot hide its queueing (no coordinated
//! omission).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// What one request came to: OK, or the gRPC code it failed with.
pub type Outcome = Result<(), tonic::Code>;

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `concurrency` virtual users, each sending its next request as soon as
    /// the previous one is answered.
    Closed { concurrency: usize },
    /// Requests start at `rate` per second whatever the answers do; at most
    /// `max_in_flight` at once (more count as `client_overload`).
    Open { rate: f64, max_in_flight: usize },
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub name: String,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop after this many measured requests, if reached before `duration`.
    pub max_requests: Option<u64>,
}

/// The recorded results of one run.
pub struct Recording {
    pub name: String,
    pub mode: Mode,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub per_second: Vec<Histogram<u64>>,
    pub outcomes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub mode: String,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Per second of the run: (second, requests, p50 ms, p99 ms).
    pub timeline: Vec<(u64, u64, f64, f64)>,
    /// The latency distribution: (percentile, ms).
    pub distribution: Vec<(f64, f64)>,
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 60 s with 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
    })
}

struct Recorder {
    started: Instant,
    latency: Histogram<u64>,
    per_second: Vec<Histogram<u64>>,
    outcomes: BTreeMap<String, u64>,
}

impl Recorder {
    fn new(started: Instant) -> Self {
        Self {
            started,
            latency: new_histogram(),
            per_second: Vec::new(),
            outcomes: BTreeMap::new(),
        }
    }

    fn record(&mut self, at: Instant, latency: Duration, outcome: Outcome) {
        let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.latency.record(micros);
        let second = at.saturating_duration_since(self.started).as_secs() as usize;
        while self.per_second.len() <= second {
            self.per_second.push(new_histogram());
        }
        let _ = self.per_second[second].record(micros);
        let key = match outcome {
            Ok(()) => "OK".to_owned(),
            Err(code) => code_name(code),
        };
        *self.outcomes.entry(key).or_default() += 1;
    }

    fn merge(&mut self, other: Recorder) {
        let _ = self.latency.add(&other.latency);
        while self.per_second.len() < other.per_second.len() {
            self.per_second.push(new_histogram());
        }
        for (second, histogram) in other.per_second.iter().enumerate() {
            let _ = self.per_second[second].add(histogram);
        }
        for (key, count) in other.outcomes {
            *self.outcomes.entry(key).or_default() += count;
        }
    }
}

pub fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let upper = c.to_ascii_uppercase();
            if i > 0 && c.is_ascii_uppercase() {
                vec!['_', upper]
            } else {
                vec![upper]
            }
        })
        .collect()
}

/// Runs `request` under `spec`; `request(n)` builds the n-th request.
pub async fn run<F, Fut>(spec: &LoadSpec, request: F) -> Recording
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let begin = Instant::now();
    let measure_from = begin + spec.warmup;
    let deadline = measure_from + spec.duration;
    let progress = spawn_progress(
        spec.name.clone(),
        measured.clone(),
        stop.clone(),
        measure_from,
        spec.duration,
    );

    let recorder = match spec.mode {
        Mode::Closed { concurrency } => {
            let mut workers = Vec::new();
            for _ in 0..concurrency.max(1) {
                let request = request.clone();
                let counter = counter.clone();
                let measured = measured.clone();
                let max = spec.max_requests;
                workers.push(tokio::spawn(async move {
                    let mut recorder = Recorder::new(measure_from);
                    loop {
                        let now = Instant::now();
                        if now >= deadline
                            || max.is_some_and(|max| measured.load(Ordering::Relaxed) >= max)
                        {
                            break;
                        }
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let sent = Instant::now();
                        let outcome = request(n).await;
                        if sent >= measure_from {
                            measured.fetch_add(1, Ordering::Relaxed);
                            recorder.record(sent, sent.elapsed(), outcome);
                        }
                    }
                    recorder
                }));
            }
            let mut total = Recorder::new(measure_from);
            for worker in workers {
                if let Ok(recorder) = worker.await {
                    total.merge(recorder);
                }
            }
            total
        }
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            let shared = Arc::new(Mutex::new(Recorder::new(measure_from)));
            let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let mut due = begin;
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                if due >= deadline
                    || spec
                        .max_requests
                        .is_some_and(|max| measured.load(Ordering::Relaxed) >= max)
                {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let request = request.clone();
                        let shared = shared.clone();
                        let measured = measured.clone();
                        let scheduled = due;
                        tasks.spawn(async move {
                            let outcome = request(n).await;
                            drop(permit);
                            if scheduled >= measure_from {
                                measured.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut recorder) = shared.lock() {
                                    recorder.record(scheduled, scheduled.elapsed(), outcome);
                                }
                            }
                        });
                    }
                    Err(_) => {
                        if due >= measure_from
                            && let Ok(mut recorder) = shared.lock()
                        {
                            *recorder
                                .outcomes
                                .entry("CLIENT_OVERLOAD".to_owned())
                                .or_default() += 1;
                        }
                    }
                }
                while tasks.try_join_next().is_some() {}
                due += interval;
            }
            while tasks.join_next().await.is_some() {}
            Arc::try_unwrap(shared)
                .ok()
                .and_then(|mutex| mutex.into_inner().ok())
                .unwrap_or_else(|| Recorder::new(measure_from))
        }
    };
    // Taken before waiting for the progress line, which ticks once a
    // second: read after it, a run that stops on its request count would
    // be rounded up to whole seconds (and its rate understated by up to
    // one second's worth).
    let finished = Instant::now().saturating_duration_since(measure_from);
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    Recording {
        name: spec.name.clone(),
        mode: spec.mode,
        elapsed: if spec.max_requests.is_some() {
            finished
        } else {
            finished.min(spec.duration.max(Duration::from_millis(1)))
        },
        latency: recorder.latency,
        per_second: recorder.per_second,
        outcomes: recorder.outcomes,
    }
}

fn spawn_progress(
    name: String,
    measured: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    measure_from: Instant,
    duration: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = measured.load(Ordering::Relaxed);
            let phase = if Instant::now() < measure_from {
                "warm-up"
            } else {
                "measuring"
            };
            eprint!(
                "\r  {name:<28} {phase:<9} {:>5.0}s/{:>3}s  {:>9} requests  {:>8} req/s   ",
                Instant::now()
                    .saturating_duration_since(measure_from)
                    .as_secs_f64(),
                duration.as_secs(),
                now,
                now - last
            );
            last = now;
        }
        eprintln!();
    })
}

impl Recording {
    pub fn summary(&self) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let requests = self.latency.len();
        let ok = self.outcomes.get("OK").copied().unwrap_or(0);
        let errors = self
            .outcomes
            .iter()
            .filter(|(key, _)| key.as_str() != "OK")
            .map(|(key, count)| (key.clone(), *count))
            .collect();
        let elapsed = self.elapsed.as_secs_f64().max(1e-9);
        let distribution = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
        ]
        .iter()
        .map(|&p| (p, ms(self.latency.value_at_quantile(p / 100.0))))
        .collect();
        Summary {
            name: self.name.clone(),
            mode: match self.mode {
                Mode::Closed { concurrency } => format!("closed, {concurrency} in flight"),
                Mode::Open { rate, .. } => format!("open, {rate:.0}/s"),
            },
            requests,
            ok,
            errors,
            elapsed_secs: elapsed,
            requests_per_sec: requests as f64 / elapsed,
            p50_ms: ms(self.latency.value_at_quantile(0.5)),
            p90_ms: ms(self.latency.value_at_quantile(0.9)),
            p99_ms: ms(self.latency.value_at_quantile(0.99)),
            p999_ms: ms(self.latency.value_at_quantile(0.999)),
            max_ms: ms(self.latency.max()),
            timeline: self
                .per_second
                .iter()
                .enumerate()
                .map(|(second, h)| {
                    (
                        second as u64,
                        h.len(),
                        ms(h.value_at_quantile(0.5)),
                        ms(h.value_at_quantile(0.99)),
                    )
                })
                .collect(),
            distribution,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_screaming_snake_case() {
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }

    /// A closed loop of 4 workers that stops after `requests` (or `duration`).
    fn four_at_a_time(duration: Duration, requests: u64) -> LoadSpec {
        LoadSpec {
            name: "t".into(),
            mode: Mode::Closed { concurrency: 4 },
            warmup: Duration::ZERO,
            duration,
            max_requests: Some(requests),
        }
    }

    #[tokio::test]
    async fn closed_loop_counts_every_measured_request() {
        let spec = four_at_a_time(Duration::from_secs(5), 200);
        let recording = run(&spec, |n| async move {
            if n % 10 == 0 {
                Err(tonic::Code::Unavailable)
            } else {
                Ok(())
            }
        })
        .await;
        let summary = recording.summary();
        assert!(summary.requests >= 200);
        assert_eq!(
            summary.requests,
            summary.ok + summary.errors.values().sum::<u64>()
        );
        assert!(summary.errors.get("UNAVAILABLE").copied().unwrap_or(0) > 0);
    }

    #[tokio::test]
    async fn a_run_ending_on_its_request_count_is_timed_to_its_last_answer() {
        // 4 workers x 65 requests of 20 ms: about 1.3 s, not 2 s (the
        // progress line's next tick).
        let spec = four_at_a_time(Duration::from_secs(30), 260);
        let recording = run(&spec, |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .await;
        let elapsed = recording.elapsed.as_secs_f64();
        assert!(
            (1.25..1.9).contains(&elapsed),
            "260 requests of 20 ms, 4 at a time, timed as {elapsed:.3} s"
        );
        let rate = recording.summary().requests_per_sec;
        assert!(rate > 140.0, "{rate:.0} requests/s");
    }
}
