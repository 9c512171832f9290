//! The report: the checks as a table, the faults with their recovery times,
//! operation counts, a text timeline, and `timeline.svg` (faults as bands,
//! successful and failed operations per second as lines).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checker::Check;
use crate::history::{Fault, Notice, Op, OpKind, Outcome};

/// Everything the report shows.
pub struct ReportInput<'a> {
    pub title: String,
    pub ops: &'a [Op],
    pub faults: &'a [Fault],
    pub notices: &'a [Notice],
    pub checks: &'a [Check],
    pub settled_after_ms: u64,
    pub boxoffice_kills: usize,
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
        "settled (no booking pending/confirming/cancelling) {} after the last operation",
        seconds(input.settled_after_ms)
    );
    let _ = writeln!(
        out,
        "payment provider: boxoffice-paysim, its own process started by `boxoffice up` (it \
         stops with each of the {} kill(s) of boxoffice and restarts from its fsynced ledger, \
         paysim-ledger.jsonl); money is checked against checkout's own records",
        input.boxoffice_kills
    );

    let _ = writeln!(out, "\ntimeline (5 s buckets: ok/errors, faults marked):");
    for line in timeline_lines(input.ops, input.faults, 5_000) {
        let _ = writeln!(out, "  {line}");
    }

    let _ = writeln!(
        out,
        "\n  {:<40} {:>8} {:>10} {:>8}  result",
        "check", "checked", "violations", "excused"
    );
    for check in input.checks {
        let result = match (&check.skipped, check.passed()) {
            (Some(why), _) => format!("skipped: {why}"),
            (None, true) => "PASS".to_owned(),
            (None, false) => "FAIL".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<40} {:>8} {:>10} {:>8}  {result}",
            check.name, check.checked, check.violation_count, check.excused_count
        );
    }
    for check in input.checks.iter().filter(|check| check.excused_count > 0) {
        let _ = writeln!(
            out,
            "\n{} — {} excused (a refund owed for a payment made before boxoffice was killed):",
            check.name, check.excused_count
        );
        for excused in &check.excused {
            let _ = writeln!(out, "  - {excused}");
        }
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

/// The timeline as SVG: fault bands, ok/s (green) and errors/s (red).
pub fn svg(ops: &[Op], faults: &[Fault], title: &str) -> String {
    let counts = buckets(ops, 1_000);
    let seconds_total = counts.len().max(1) as f64;
    let peak = counts
        .iter()
        .map(|(ok, err)| (*ok).max(*err))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (width, height, left, top, plot_h) = (1200.0, 420.0, 60.0, 40.0, 300.0);
    let plot_w = width - left - 20.0;
    let x = |second: f64| left + second / seconds_total * plot_w;
    let y = |value: f64| top + plot_h - value / peak * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    let colours = [
        "#f4b6b6", "#f6d7a7", "#c9e4b4", "#b6d7f4", "#d9c2f0", "#f0c2de", "#e0e0a0",
    ];
    for fault in faults {
        let colour = colours[fault.kind as usize % colours.len()];
        let (from, to) = (
            x(fault.start_ms as f64 / 1000.0),
            x(fault.heal_ms as f64 / 1000.0),
        );
        let _ = writeln!(
            out,
            r#"<rect x="{from:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="{colour}" opacity="0.7"><title>{}</title></rect>"#,
            (to - from).max(1.0),
            escape(fault.kind.label())
        );
        let _ = writeln!(
            out,
            r#"<text x="{from:.1}" y="{:.1}" transform="rotate(-90 {from:.1} {:.1})" font-size="9">{}</text>"#,
            top + plot_h + 75.0,
            top + plot_h + 75.0,
            fault.kind.short()
        );
        if let Some(ok) = fault.first_ok_ms {
            let at = x(ok as f64 / 1000.0);
            let _ = writeln!(
                out,
                r#"<line x1="{at:.1}" x2="{at:.1}" y1="{top}" y2="{:.1}" stroke="black" stroke-dasharray="2,2"/>"#,
                top + plot_h
            );
        }
    }
    for (series, colour) in [(0, "#1a7f37"), (1, "#cf222e")] {
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(second, pair)| {
                let value = if series == 0 { pair.0 } else { pair.1 };
                format!("{:.1},{:.1}", x(second as f64 + 0.5), y(value as f64))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
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
        r#"<text x="5" y="{:.1}">{peak:.0}/s</text><text x="5" y="{:.1}">0</text>"#,
        top + 10.0,
        top + plot_h
    );
    let step = (seconds_total / 10.0).ceil().max(1.0);
    let mut tick = 0.0;
    while tick <= seconds_total {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{tick:.0}s</text>"#,
            x(tick),
            top + plot_h + 14.0
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="20" fill="#1a7f37">ok/s</text><text x="{:.1}" y="20" fill="#cf222e">errors/s</text><text x="{:.1}" y="20">bands: faults, dashes: first success after heal</text>"##,
        width - 460.0,
        width - 420.0,
        width - 350.0
    );
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
