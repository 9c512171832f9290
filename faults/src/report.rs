//! The report: the checks as a table, the faults with their recovery times
//! (each, and per kind), operation counts, a text timeline, and
//! `timeline.svg` (faults as shaded bands, a colour per kind; successful
//! and failed operations per second as lines), rendered to `timeline.png`
//! with `rsvg-convert` (librsvg2-bin) when it is installed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::check::Check;
use crate::history::{Fault, FaultKind, Notice, Op, OpKind, Outcome};
use crate::provider::ProviderLedger;

/// Everything the report shows.
pub struct ReportInput<'a> {
    pub title: String,
    pub ops: &'a [Op],
    pub faults: &'a [Fault],
    pub notices: &'a [Notice],
    pub checks: &'a [Check],
    pub settled_after_ms: u64,
    pub provider: &'a ProviderLedger,
    /// What became of `timeline.png`.
    pub png: String,
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

pub fn text(input: &ReportInput<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n== {} ==", input.title);
    let total = input.ops.len();
    let count = |outcome| input.ops.iter().filter(|op| op.outcome == outcome).count();
    let span_ms = input.ops.iter().map(|op| op.complete_ms).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "operations: {total} ({} ok, {} fail, {} unknown) over {}",
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Unknown),
        seconds(span_ms)
    );
    let mut by_kind: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for op in input.ops {
        let entry = by_kind.entry(format!("{:?}", op.kind)).or_default();
        entry[match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Unknown => 2,
        }] += 1;
    }
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>8} {:>8}",
        "operation", "ok", "fail", "unknown"
    );
    for (kind, [ok, fail, unknown]) in &by_kind {
        let _ = writeln!(out, "  {kind:<16} {ok:>8} {fail:>8} {unknown:>8}");
    }
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for op in input.ops {
        if let Some(code) = &op.code {
            *codes.entry(code.as_str()).or_default() += 1;
        }
    }
    let codes: Vec<String> = codes
        .iter()
        .map(|(code, count)| format!("{code} {count}"))
        .collect();
    let _ = writeln!(out, "error answers by gRPC code: {}", codes.join(", "));
    let confirmed = input
        .ops
        .iter()
        .filter(|op| {
            op.kind == OpKind::ConfirmBooking
                && op.outcome == Outcome::Ok
                && op.state.as_deref() == Some("CONFIRMED")
        })
        .count();
    let _ = writeln!(out, "bookings answered CONFIRMED: {confirmed}");

    let _ = writeln!(
        out,
        "\nfaults (recovery = heal → first success invoked after it):"
    );
    let _ = writeln!(
        out,
        "  {:<36} {:>8} {:>8} {:>10} {:>12}",
        "fault", "start", "length", "recovery", "1st confirm"
    );
    for fault in input.faults {
        let recovery = |at: Option<u64>| {
            at.map(|at| seconds(at.saturating_sub(fault.heal_ms)))
                .unwrap_or_else(|| "NONE".to_owned())
        };
        let _ = writeln!(
            out,
            "  {:<36} {:>8} {:>8} {:>10} {:>12}",
            fault.kind.label(),
            seconds(fault.start_ms),
            seconds(fault.heal_ms.saturating_sub(fault.start_ms)),
            recovery(fault.first_ok_ms),
            recovery(fault.first_confirm_ms)
        );
    }
    let _ = writeln!(
        out,
        "\nrecovery by fault kind (heal → first success / first confirmation):"
    );
    let _ = writeln!(
        out,
        "  {:<40} {:>5} {:>9} {:>9} {:>11} {:>11}",
        "fault", "count", "median", "max", "conf median", "conf max"
    );
    for kind in FaultKind::ALL {
        let of_kind: Vec<&Fault> = input.faults.iter().filter(|f| f.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let summary = |pick: fn(&Fault) -> Option<u64>| {
            let mut times: Vec<u64> = of_kind
                .iter()
                .filter_map(|f| pick(f).map(|at| at.saturating_sub(f.heal_ms)))
                .collect();
            times.sort_unstable();
            let missing = of_kind.len() - times.len();
            let median = times
                .get(times.len() / 2)
                .map_or("NONE".to_owned(), |t| seconds(*t));
            let max = match (missing, times.last()) {
                (0, Some(max)) => seconds(*max),
                (_, _) => format!("{missing} NONE"),
            };
            (median, max)
        };
        let (median, max) = summary(|f| f.first_ok_ms);
        let (confirm_median, confirm_max) = summary(|f| f.first_confirm_ms);
        let _ = writeln!(
            out,
            "  {:<40} {:>5} {:>9} {:>9} {:>11} {:>11}",
            kind.label(),
            of_kind.len(),
            median,
            max,
            confirm_median,
            confirm_max
        );
    }
    let holders = input
        .ops
        .iter()
        .filter(|op| op.process.starts_with("holder-") && op.kind == OpKind::ConfirmBooking)
        .filter(|op| op.attempt == 1)
        .count();
    let _ = writeln!(
        out,
        "paused holders (confirming after their hold expired, racing a rival): {holders}"
    );
    for notice in input.notices {
        let _ = writeln!(out, "notice at {}: {}", seconds(notice.at_ms), notice.text);
    }
    let _ = writeln!(
        out,
        "settled (no booking pending/confirming/cancelling, no seat release owed) {} after the last operation",
        seconds(input.settled_after_ms)
    );
    let provider = input.provider;
    let captured: i64 = provider.intents.iter().map(|i| i.captured).sum();
    let refunded: i64 = provider.intents.iter().map(|i| i.refunded).sum();
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for intent in &provider.intents {
        *statuses.entry(intent.status.as_str()).or_default() += 1;
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect();
    let _ = writeln!(
        out,
        "payment provider: boxoffice-paysim, a process of the harness's own (killed and paused \
         by the nemesis, restarted from its fsynced ledger paysim-ledger.jsonl); its ledger: \
         {} payment intents ({}), {} refunds, captured {captured}, refunded {refunded}, \
         kept {} (minor units)",
        provider.intents.len(),
        statuses.join(", "),
        provider.refunds,
        captured - refunded
    );
    let _ = writeln!(out, "timeline plot: {}", input.png);

    let _ = writeln!(out, "\ntimeline (5 s buckets: ok/errors, faults marked):");
    for line in timeline_lines(input.ops, input.faults, 5_000) {
        let _ = writeln!(out, "  {line}");
    }

    let _ = writeln!(
        out,
        "\n  {:<40} {:>8} {:>10}  result",
        "check", "checked", "violations"
    );
    for check in input.checks {
        let result = match (&check.skipped, check.passed()) {
            (Some(why), _) => format!("skipped: {why}"),
            (None, true) => "PASS".to_owned(),
            (None, false) => "FAIL".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<40} {:>8} {:>10}  {result}",
            check.name, check.checked, check.violation_count
        );
    }
    for check in input.checks.iter().filter(|check| !check.passed()) {
        let _ = writeln!(
            out,
            "\n{} — {} violation(s):",
            check.name, check.violation_count
        );
        for violation in &check.violations {
            let _ = writeln!(out, "  - {violation}");
        }
    }
    out
}

/// Per bucket: ok and error (fail + unknown) counts by completion time,
/// and the faults active in it.
fn buckets(ops: &[Op], bucket_ms: u64) -> Vec<(u64, u64)> {
    let end = ops.iter().map(|op| op.complete_ms).max().unwrap_or(0);
    let mut counts = vec![(0_u64, 0_u64); (end / bucket_ms + 1) as usize];
    for op in ops {
        let slot = &mut counts[(op.complete_ms / bucket_ms) as usize];
        match op.outcome {
            Outcome::Ok => slot.0 += 1,
            _ => slot.1 += 1,
        }
    }
    counts
}

fn timeline_lines(ops: &[Op], faults: &[Fault], bucket_ms: u64) -> Vec<String> {
    let counts = buckets(ops, bucket_ms);
    let peak = counts.iter().map(|(ok, _)| *ok).max().unwrap_or(1).max(1);
    counts
        .iter()
        .enumerate()
        .map(|(index, (ok, errors))| {
            let from = index as u64 * bucket_ms;
            let to = from + bucket_ms;
            let active: Vec<&str> = faults
                .iter()
                .filter(|f| f.start_ms < to && f.heal_ms >= from)
                .map(|f| f.kind.short())
                .collect();
            let bar = "#".repeat(((ok * 30) / peak) as usize);
            format!(
                "{:>7} {:<30} ok {:>6} err {:>5} {}",
                seconds(from),
                bar,
                ok,
                errors,
                active.join(",")
            )
        })
        .collect()
}

/// A fault kind's band colour.
fn colour(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::RedisKill => "#e6550d",
        FaultKind::RedisPause => "#fdae6b",
        FaultKind::PostgresStopImmediate => "#3182bd",
        FaultKind::PostgresKillPostmaster => "#6baed6",
        FaultKind::PostgresPause => "#9ecae1",
        FaultKind::BoxofficeKill => "#756bb1",
        FaultKind::BoxofficePause => "#bcbddc",
        FaultKind::PaysimKill => "#31a354",
        FaultKind::PaysimPause => "#a1d99b",
    }
}

/// The timeline as SVG: a shaded band per fault (a colour per kind, with
/// a legend), ok/s (green) and errors/s (red) averaged over buckets of a
/// second or more (at most about 600 of them), and a dashed line at each
/// fault's first success after its heal.
pub fn svg(ops: &[Op], faults: &[Fault], title: &str) -> String {
    let span_ms = ops
        .iter()
        .map(|op| op.complete_ms)
        .chain(faults.iter().map(|f| f.heal_ms))
        .max()
        .unwrap_or(0);
    let bucket_ms = (span_ms / 600_000 + 1) * 1_000;
    let bucket_s = bucket_ms as f64 / 1000.0;
    let counts = buckets(ops, bucket_ms);
    let seconds_total = (counts.len() as f64 * bucket_s).max(1.0);
    let peak = counts
        .iter()
        .map(|(ok, err)| (*ok).max(*err) as f64 / bucket_s)
        .fold(1.0, f64::max);
    let (width, left, top, plot_h) = (1400.0, 70.0, 50.0, 360.0);
    let plot_w = width - left - 30.0;
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| faults.iter().any(|f| f.kind == *kind))
        .collect();
    let legend_top = top + plot_h + 40.0;
    let height = legend_top + 20.0 * kinds.len().div_ceil(3) as f64 + 20.0;
    let x = |second: f64| left + second / seconds_total * plot_w;
    let y = |value: f64| top + plot_h - value / peak * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="DejaVu Sans, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    for fault in faults {
        let (from, to) = (
            x(fault.start_ms as f64 / 1000.0),
            x(fault.heal_ms as f64 / 1000.0),
        );
        let _ = writeln!(
            out,
            r#"<rect x="{from:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="{}" opacity="0.55"><title>{}</title></rect>"#,
            (to - from).max(1.5),
            colour(fault.kind),
            escape(fault.kind.label())
        );
        if let Some(ok) = fault.first_ok_ms {
            let at = x(ok as f64 / 1000.0);
            let _ = writeln!(
                out,
                r#"<line x1="{at:.1}" x2="{at:.1}" y1="{top}" y2="{:.1}" stroke="black" stroke-width="0.6" stroke-dasharray="2,2"/>"#,
                top + plot_h
            );
        }
    }
    // Grid lines at quarters of the peak.
    for quarter in 1..=4 {
        let value = peak * quarter as f64 / 4.0;
        let at = y(value);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{:.1}" y1="{at:.1}" y2="{at:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{value:.0}/s</text>"##,
            left + plot_w,
            left - 4.0,
            at + 4.0
        );
    }
    for (series, stroke) in [(0, "#1a7f37"), (1, "#cf222e")] {
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(index, pair)| {
                let value = if series == 0 { pair.0 } else { pair.1 };
                format!(
                    "{:.1},{:.1}",
                    x((index as f64 + 0.5) * bucket_s),
                    y(value as f64 / bucket_s)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="1.3" points="{}"/>"#,
            points.join(" ")
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="black"/>"#,
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    let _ = writeln!(
        out,
        r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{:.1}" stroke="black"/>"#,
        top + plot_h
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
        left - 4.0,
        top + plot_h + 4.0
    );
    let step = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|step| seconds_total / step <= 12.0)
        .unwrap_or(1200.0);
    let mut tick = 0.0;
    while tick <= seconds_total {
        let label = if step >= 60.0 {
            format!("{:.0} min", tick / 60.0)
        } else {
            format!("{tick:.0} s")
        };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            x(tick),
            top + plot_h + 16.0
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        r##"<text x="{left}" y="38" fill="#1a7f37">— ok/s</text><text x="{:.1}" y="38" fill="#cf222e">— errors/s (failed or unknown)</text><text x="{:.1}" y="38">┆ first success after a heal; averaged over {bucket_s:.0} s</text>"##,
        left + 70.0,
        left + 290.0
    );
    for (index, kind) in kinds.iter().enumerate() {
        let (column, row) = (index % 3, index / 3);
        let (at_x, at_y) = (left + column as f64 * 420.0, legend_top + row as f64 * 20.0);
        let count = faults.iter().filter(|f| f.kind == *kind).count();
        let _ = writeln!(
            out,
            r#"<rect x="{at_x:.1}" y="{:.1}" width="14" height="12" fill="{}" opacity="0.55"/><text x="{:.1}" y="{at_y:.1}">{} ×{count}</text>"#,
            at_y - 10.0,
            colour(*kind),
            at_x + 20.0,
            escape(kind.label())
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Renders `svg` to `png` with `rsvg-convert`; answers what happened, for
/// the report (the plot is a convenience: a missing tool fails nothing).
pub fn render_png(svg: &std::path::Path, png: &std::path::Path) -> String {
    let status = std::process::Command::new("rsvg-convert")
        .arg("--background-color=white")
        .arg("-o")
        .arg(png)
        .arg(svg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => format!("{}", png.display()),
        Ok(status) => format!("not rendered: rsvg-convert failed ({status})"),
        Err(_) => "not rendered: rsvg-convert is not installed (apt-get install librsvg2-bin; scripts/services installs it)".to_owned(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
