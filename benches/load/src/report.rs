//! Reports: a human summary, a JSON file with every figure, and SVG charts.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

/// One point of the timeline, per second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    pub t: f64,
    pub open: u64,
    pub connects_per_s: f64,
    pub failures: u64,
    pub deliveries_per_s: f64,
    pub published_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub server_rss: Option<u64>,
    /// (server RSS − RSS before the run) ÷ open connections.
    pub server_rss_per_connection: Option<f64>,
    pub server_cpu_pct: Option<f64>,
    /// Server CPU time per open connection, in microseconds per second.
    pub server_cpu_us_per_connection: Option<f64>,
    pub harness_cpu_pct: f64,
    /// RSS of the harness: the coordinator and its workers.
    pub harness_rss: Option<u64>,
    pub slab: Option<u64>,
    /// TCP socket buffers, machine-wide.
    pub tcp_buffers: Option<u64>,
}

/// Chart files every scenario writes.
pub const CHARTS: [&str; 7] = [
    "connections.svg",
    "throughput.svg",
    "latency.svg",
    "server_rss.svg",
    "per_connection.svg",
    "kernel_memory.svg",
    "cpu.svg",
];

/// Copies a run's charts and summary into `dest` (e.g. benches/results/<name>/<run>/, to be
/// committed).
pub fn copy_charts(from: &Path, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for f in CHARTS.iter().chain(&["summary.txt"]) {
        std::fs::copy(from.join(f), dest.join(f))
            .map_err(|e| format!("copy {f} to {}: {e}", dest.display()))?;
    }
    Ok(())
}

pub fn write_charts(dir: &Path, label: &str, timeline: &[Point]) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    let series = |f: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        timeline.iter().filter_map(|p| f(p).map(|v| (p.t, v))).collect()
    };
    type Line<'a> = (&'a str, Vec<(f64, f64)>);
    let charts: Vec<(&str, &str, Vec<Line>)> = vec![
        ("connections.svg", "open connections", vec![("open", series(&|p| Some(p.open as f64)))]),
        (
            "throughput.svg",
            "per second",
            vec![
                ("deliveries/s", series(&|p| Some(p.deliveries_per_s))),
                ("connects/s", series(&|p| Some(p.connects_per_s))),
                ("published/s", series(&|p| Some(p.published_per_s))),
            ],
        ),
        ("latency.svg", "latency (ms)", vec![("p50", series(&|p| p.p50_ms)), ("p99", series(&|p| p.p99_ms))]),
        (
            "server_rss.svg",
            "RSS (MiB)",
            vec![
                ("server", series(&|p| p.server_rss.map(|r| r as f64 / 1048576.0))),
                ("harness", series(&|p| p.harness_rss.map(|r| r as f64 / 1048576.0))),
            ],
        ),
        (
            "per_connection.svg",
            "server bytes per connection",
            vec![("RSS growth / open connections", series(&|p| p.server_rss_per_connection))],
        ),
        (
            "kernel_memory.svg",
            "kernel memory, machine-wide (MiB)",
            vec![
                ("slab", series(&|p| p.slab.map(|b| b as f64 / 1048576.0))),
                ("TCP buffers", series(&|p| p.tcp_buffers.map(|b| b as f64 / 1048576.0))),
            ],
        ),
        (
            "cpu.svg",
            "CPU (% of one core)",
            vec![
                ("server", series(&|p| p.server_cpu_pct)),
                ("harness", series(&|p| Some(p.harness_cpu_pct))),
            ],
        ),
    ];
    for (file, y_label, lines) in charts {
        let path = dir.join(file);
        let x_max = timeline.last().map_or(1.0, |p| p.t).max(1.0);
        let y_max =
            lines.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(0.0f64, f64::max).max(1.0) * 1.1;
        let root = SVGBackend::new(&path, (720, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{label}: {y_label}"), ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("seconds").y_desc(y_label).draw().map_err(|e| e.to_string())?;
        for (i, (name, points)) in lines.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        files.push(file.to_string());
    }
    Ok(files)
}
