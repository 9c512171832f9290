//! Turning runs into something a person can read: a table, ratios against
//! the baselines measured in the same run, JSON for machines, and SVG plots
//! of latency over time and of the latency distribution.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::load::Summary;

/// One scenario compared with its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub scenario: String,
    pub baseline: String,
    pub ratio: f64,
    /// The goal for the ratio, when the project has one.
    pub target: Option<f64>,
}

impl Ratio {
    pub fn verdict(&self) -> &'static str {
        match self.target {
            Some(target) if self.ratio >= target => "meets target",
            Some(_) => "BELOW TARGET",
            None => "",
        }
    }
}

/// A fact the run checked (e.g. tickets sold twice) and its value.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub scenarios: Vec<Summary>,
    pub ratios: Vec<Ratio>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub git_commit: String,
    pub finished_at: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split(':').nth(1))
            .map(|model| model.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("MemTotal"))
                    .and_then(|line| {
                        line.split_whitespace()
                            .nth(1)
                            .and_then(|kb| kb.parse::<f64>().ok())
                    })
            })
            .map(|kb| kb / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        let git_commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            memory_gib,
            git_commit,
            finished_at: chrono_like_now(),
        }
    }
}

fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix {secs}")
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "machine: {} CPUs ({}), {:.0} GiB, commit {}",
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_gib,
            self.machine.git_commit
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<34} {:<22} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8}  errors",
            "scenario", "mode", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms"
        );
        let _ = writeln!(out, "{}", "-".repeat(128));
        for s in &self.scenarios {
            let errors = if s.errors.is_empty() {
                "-".to_owned()
            } else {
                s.errors
                    .iter()
                    .map(|(code, n)| format!("{code}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let _ = writeln!(
                out,
                "{:<34} {:<22} {:>10} {:>11.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {}",
                s.name,
                s.mode,
                s.requests,
                s.requests_per_sec,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.p999_ms,
                errors
            );
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<34} {:<28} {:>7}  {:>7}  verdict",
                "ratio", "baseline", "value", "target"
            );
            let _ = writeln!(out, "{}", "-".repeat(96));
            for ratio in &self.ratios {
                let target = ratio
                    .target
                    .map(|t| format!("≥ {t:.2}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<34} {:<28} {:>7.2}  {:>7}  {}",
                    ratio.scenario,
                    ratio.baseline,
                    ratio.ratio,
                    target,
                    ratio.verdict()
                );
            }
        }
        if !self.checks.is_empty() {
            let _ = writeln!(out);
            for check in &self.checks {
                let mark = if check.ok { "ok  " } else { "FAIL" };
                let _ = writeln!(out, "[{mark}] {}: {}", check.name, check.value);
            }
        }
        out
    }

    /// Writes `report.txt`, `report.json`, `latency-over-time.svg` and
    /// `latency-distribution.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.txt"), self.table())?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("latency-over-time.svg"), self.timeline_svg())?;
        std::fs::write(
            dir.join("latency-distribution.svg"),
            self.distribution_svg(),
        )?;
        Ok(())
    }

    fn timeline_svg(&self) -> String {
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .scenarios
            .iter()
            .map(|s| {
                (
                    format!("{} p99", s.name),
                    s.timeline
                        .iter()
                        .map(|(second, _, _, p99)| (*second as f64, *p99))
                        .collect(),
                )
            })
            .collect();
        line_chart(
            "p99 latency per second of the run",
            "second",
            "ms",
            &series,
            false,
        )
    }

    fn distribution_svg(&self) -> String {
        // x: the "nines" of the percentile, so the tail gets the room it needs.
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .scenarios
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.distribution
                        .iter()
                        .filter(|(p, _)| *p < 100.0)
                        .map(|(p, ms)| (-(1.0 - p / 100.0).log10(), *ms))
                        .collect(),
                )
            })
            .collect();
        line_chart(
            "latency by percentile (x: 1 = p90, 2 = p99, 3 = p99.9)",
            "nines",
            "ms",
            &series,
            true,
        )
    }
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> String {
    let (width, height, left, right, top, bottom) = (900.0, 500.0, 70.0, 260.0, 40.0, 50.0);
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let max_x = points.clone().map(|(x, _)| *x).fold(1.0_f64, f64::max);
    let max_y = points.clone().map(|(_, y)| *y).fold(0.001_f64, f64::max);
    let min_y = points.map(|(_, y)| *y).fold(f64::MAX, f64::min).max(0.001);
    let transform_y = |y: f64| if log_y { y.max(0.001).log10() } else { y };
    let (y_low, y_high) = if log_y {
        (
            transform_y(min_y).floor(),
            transform_y(max_y)
                .ceil()
                .max(transform_y(min_y).floor() + 1.0),
        )
    } else {
        (0.0, max_y * 1.1)
    };
    let px = |x: f64| left + (x / max_x) * (width - left - right);
    let py = |y: f64| {
        top + (1.0 - (transform_y(y) - y_low) / (y_high - y_low)) * (height - top - bottom)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="15">{title}</text>"#
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        height - bottom,
        width - right,
        height - bottom,
        height - bottom
    );
    for tick in 0..=5 {
        let value = if log_y {
            10f64.powf(y_low + (y_high - y_low) * tick as f64 / 5.0)
        } else {
            y_high * tick as f64 / 5.0
        };
        let y = py(value);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{value:.2}</text>"##,
            width - right,
            left - 5.0,
            y + 4.0
        );
    }
    for tick in 0..=5 {
        let value = max_x * tick as f64 / 5.0;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{value:.1}</text>"#,
            px(value),
            height - bottom + 18.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{x_label}</text><text x="15" y="{:.1}" transform="rotate(-90 15 {:.1})" text-anchor="middle">{y_label}</text>"#,
        (left + width - right) / 2.0,
        height - 8.0,
        height / 2.0,
        height / 2.0
    );
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let legend_y = top + 18.0 * index as f64;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{}" y="{:.1}">{}</text>"#,
            width - right + 10.0,
            legend_y,
            width - right + 28.0,
            legend_y + 10.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
