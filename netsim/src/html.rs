//! `report.html`: a self-contained page with an inline SVG timeline (nodes
//! as lanes, messages as lines, partitions shaded, crashes, restarts, pauses,
//! disconnections and held leases marked, writes as dots, fenced writes
//! refused as red dots) and the convergence curve.
//!
//! It owns the picture only. It must never read anything but the report,
//! and it bounds its output: at most [`MAX_LANES`] lanes and
//! [`MAX_MESSAGE_LINES`] message lines (evenly sampled).

use std::fmt::Write as _;

use crate::report::Report;
use crate::scenario::Fault;
use crate::trace::TraceEvent;

/// Lanes drawn (the first nodes by id).
pub const MAX_LANES: u32 = 40;

/// Message lines drawn at most.
pub const MAX_MESSAGE_LINES: usize = 4_000;

const WIDTH: f64 = 1_200.0;
const LEFT: f64 = 50.0;
const TOP: f64 = 20.0;

struct Axis {
    end_ms: f64,
    lanes: u32,
    lane_h: f64,
}

impl Axis {
    fn x(&self, t: u64) -> f64 {
        LEFT + (t as f64) * (WIDTH - LEFT - 10.0) / self.end_ms.max(1.0)
    }

    fn y(&self, node: u32) -> f64 {
        TOP + (f64::from(node) + 0.5) * self.lane_h
    }

    fn shown(&self, node: u32) -> bool {
        node < self.lanes
    }

    fn height(&self) -> f64 {
        TOP + f64::from(self.lanes) * self.lane_h + 30.0
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let lanes = u32::try_from(report.peers)
        .unwrap_or(MAX_LANES)
        .min(MAX_LANES);
    let axis = Axis {
        end_ms: report.virtual_ms as f64,
        lanes,
        lane_h: (600.0 / f64::from(lanes.max(1))).clamp(8.0, 24.0),
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>netsim {} seed {}</title>\
         <style>body{{font-family:sans-serif;margin:20px}}pre{{background:#f4f4f4;padding:8px}}</style>\
         </head><body><h1>netsim: {} — {} peers, seed {}</h1><pre>{}</pre>",
        report.scenario,
        report.seed,
        report.scenario,
        report.peers,
        report.seed,
        escape(&report.summary()),
    );
    if report.records.is_empty() {
        page.push_str("<p>No trace records were kept for this run.</p>");
    }
    let _ = write!(
        page,
        "<h2>Timeline</h2><p>Lanes are nodes (first {lanes}); grey lines are messages \
         (at most {MAX_MESSAGE_LINES}, sampled); shaded bands are partitions; red × crash, \
         green ▲ start, orange bars pause, grey bars disconnection, blue dots writes.</p>"
    );
    page.push_str(&timeline(report, &axis));
    page.push_str("<h2>Convergence</h2><p>Fraction of live nodes holding every change that exists on any live node.</p>");
    page.push_str(&curve(report, &axis));
    page.push_str("</body></html>\n");
    page
}

/// Intervals `[from, to)` opened by `open` events and closed by `close` events, per lane.
fn intervals(
    report: &Report,
    open: impl Fn(&TraceEvent) -> Option<u32>,
    close: impl Fn(&TraceEvent) -> Option<u32>,
) -> Vec<(u32, u64, u64)> {
    let mut started: Vec<(u32, u64)> = Vec::new();
    let mut out = Vec::new();
    for r in &report.records {
        let event = &r.e;
        // Close first: a new partition ends the previous one.
        if let Some(lane) = close(event)
            && let Some(i) = started.iter().position(|(l, _)| *l == lane)
        {
            let (_, from) = started.remove(i);
            out.push((lane, from, r.t));
        }
        if let Some(lane) = open(event) {
            started.push((lane, r.t));
        }
    }
    out.extend(
        started
            .into_iter()
            .map(|(lane, from)| (lane, from, report.virtual_ms)),
    );
    out
}

fn timeline(report: &Report, axis: &Axis) -> String {
    let mut svg = String::new();
    let h = axis.height();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h}\" font-size=\"10\">"
    );
    // Partitions: one band across every lane (u32::MAX marks "all lanes").
    let partitions = intervals(
        report,
        |e| matches!(fault(e), Some(Fault::Partition(_))).then_some(u32::MAX),
        |e| matches!(fault(e), Some(Fault::Heal | Fault::Partition(_))).then_some(u32::MAX),
    );
    for (_, from, to) in partitions {
        let (x0, x1) = (axis.x(from), axis.x(to));
        let _ = write!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#ffd6d6\"><title>partition {from}–{to} ms</title></rect>",
            (x1 - x0).max(1.0),
            h - TOP - 30.0
        );
    }
    for node in 0..axis.lanes {
        let y = axis.y(node);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{:.1}\">n{node}</text>",
            WIDTH - 10.0,
            y + 3.0
        );
    }
    let bars = [
        (
            intervals(report, |e| pause_of(e, true), |e| pause_of(e, false)),
            "#f5a623",
        ),
        (
            intervals(report, |e| offline_of(e, true), |e| offline_of(e, false)),
            "#999",
        ),
        (
            intervals(report, |e| lease_of(e, true), |e| lease_of(e, false)),
            "#2a2",
        ),
    ];
    for (spans, colour) in bars {
        for (lane, from, to) in spans.into_iter().filter(|(l, _, _)| axis.shown(*l)) {
            let (x0, x1, y) = (axis.x(from), axis.x(to), axis.y(lane));
            let _ = write!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" opacity=\"0.6\"/>",
                y - axis.lane_h * 0.3,
                (x1 - x0).max(1.0),
                axis.lane_h * 0.6
            );
        }
    }
    messages(report, axis, &mut svg);
    for r in &report.records {
        match &r.e {
            TraceEvent::Crash { node, clean, .. } if axis.shown(*node) => {
                let colour = if *clean { "#a00" } else { "#f00" };
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\" font-size=\"14\" text-anchor=\"middle\">×</text>",
                    axis.x(r.t),
                    axis.y(*node) + 4.0
                );
            }
            TraceEvent::Start { node, incarnation } if axis.shown(*node) && r.t > 0 => {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#0a0\" text-anchor=\"middle\">▲<title>incarnation {incarnation}</title></text>",
                    axis.x(r.t),
                    axis.y(*node) + 4.0
                );
            }
            TraceEvent::FencedWrite {
                node,
                accepted: false,
                ..
            } if axis.shown(*node) => {
                let _ = write!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#e00\"><title>fenced write refused</title></circle>",
                    axis.x(r.t),
                    axis.y(*node)
                );
            }
            TraceEvent::Write { node, .. } if axis.shown(*node) => {
                let _ = write!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"#06c\"/>",
                    axis.x(r.t),
                    axis.y(*node)
                );
            }
            _ => {}
        }
    }
    ticks(axis, h - 15.0, &mut svg);
    svg.push_str("</svg>");
    svg
}

fn fault(e: &TraceEvent) -> Option<&Fault> {
    match e {
        TraceEvent::Fault { fault } => Some(fault),
        _ => None,
    }
}

fn pause_of(e: &TraceEvent, open: bool) -> Option<u32> {
    match fault(e)? {
        Fault::Pause(n) if open => Some(*n),
        Fault::Resume(n) if !open => Some(*n),
        _ => None,
    }
}

fn offline_of(e: &TraceEvent, open: bool) -> Option<u32> {
    match fault(e)? {
        Fault::Disconnect(n) if open => Some(*n),
        Fault::Reconnect(n) if !open => Some(*n),
        _ => None,
    }
}

/// A lease held from `acquired` until `released`, `expired` or a crash.
fn lease_of(e: &TraceEvent, open: bool) -> Option<u32> {
    match e {
        TraceEvent::Lease { node, what, .. } if open == (*what == "acquired") => {
            (open || matches!(*what, "released" | "expired")).then_some(*node)
        }
        TraceEvent::Crash { node, .. } if !open => Some(*node),
        _ => None,
    }
}

fn messages(report: &Report, axis: &Axis, svg: &mut String) {
    let shown = |from: u32, to: u32| axis.shown(from) && axis.shown(to);
    let total = report
        .records
        .iter()
        .filter(|r| matches!(r.e, TraceEvent::Deliver { from, to, .. } if shown(from, to)))
        .count();
    let step = total.div_ceil(MAX_MESSAGE_LINES).max(1);
    let mut i = 0;
    for r in &report.records {
        if let TraceEvent::Deliver {
            from, to, sent_at, ..
        } = r.e
        {
            if !shown(from, to) {
                continue;
            }
            i += 1;
            if i % step == 0 {
                let _ = write!(
                    svg,
                    "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-width=\"0.4\" opacity=\"0.5\"/>",
                    axis.x(sent_at),
                    axis.y(from),
                    axis.x(r.t),
                    axis.y(to)
                );
            }
        }
    }
}

fn ticks(axis: &Axis, y: f64, svg: &mut String) {
    let end = axis.end_ms as u64;
    let step = [100, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000]
        .into_iter()
        .find(|s| end / s <= 12)
        .unwrap_or(120_000);
    for t in (0..=end).step_by(step as usize) {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{}s</text>",
            axis.x(t),
            t as f64 / 1000.0
        );
    }
}

fn curve(report: &Report, axis: &Axis) -> String {
    let plot_h = 200.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" font-size=\"10\">",
        plot_h + TOP + 30.0
    );
    let y = |fraction: f64| TOP + (1.0 - fraction) * plot_h;
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#ccc\"/><text x=\"4\" y=\"{:.1}\">100%</text><text x=\"4\" y=\"{:.1}\">0%</text>",
        WIDTH - LEFT - 10.0,
        y(1.0) + 3.0,
        y(0.0)
    );
    let mut points = String::new();
    let mut last_y = y(0.0);
    for p in &report.curve {
        let fraction = if p.live == 0 {
            0.0
        } else {
            f64::from(p.complete) / f64::from(p.live)
        };
        let x = axis.x(p.t);
        let _ = write!(points, "{x:.1},{last_y:.1} {x:.1},{:.1} ", y(fraction));
        last_y = y(fraction);
    }
    let _ = write!(points, "{:.1},{last_y:.1}", axis.x(report.virtual_ms));
    let _ = write!(
        svg,
        "<polyline points=\"{points}\" fill=\"none\" stroke=\"#06c\" stroke-width=\"1.5\"/>"
    );
    ticks(axis, plot_h + TOP + 15.0, &mut svg);
    svg.push_str("</svg>");
    svg
}
