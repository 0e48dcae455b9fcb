//! `table DIR...`: the markdown comparison table of recorded runs (their report.json), one
//! table per scenario, one row per run.

use std::path::PathBuf;

use serde_json::Value;

fn num(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if digits == 0 => thousands(x.round() as i64),
        Some(x) => format!("{x:.digits$}"),
        None => "–".into(),
    }
}

fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn fanout_row(r: &Value) -> String {
    let f = &r["figures"];
    let p = &r["params"];
    let (phase, what) = if f["sustained_max"].is_object() {
        (&f["sustained_max"], "sustained max")
    } else if f["sustained_max"].is_null() && p["find_max"] == true {
        (&Value::Null, "no phase passed")
    } else {
        (&f["phases"][0], "one phase")
    };
    let sends = &phase["server_sends"];
    format!(
        "| {} | {} | {} | {} | **{}** | {} | {} | {} | {} | {} | {} ({}) | {} | {} |",
        r["label"].as_str().unwrap_or("?"),
        num(&p["subscribers"], 0),
        num(&p["channels"], 0),
        what,
        num(&phase["deliveries_per_second"], 0),
        num(&phase["achieved_events_per_second"], 0),
        num(&phase["latency"]["p50_ms"], 1),
        num(&phase["latency"]["p99_ms"], 1),
        match sends["deliveries_per_send"].as_f64() {
            Some(_) => format!(
                "{} ({})",
                num(&sends["deliveries_per_send"], 2),
                sends["source"].as_str().unwrap_or("")
            ),
            None => "–".into(),
        },
        num(&phase["server_cpu_pct"], 0),
        num(&phase["harness_cpu_pct"], 0),
        num(&phase["harness_receive_cpu_pct"], 0),
        num(&phase["harness_read_lag"]["p99_ms"], 1),
        match (phase["lost"].as_u64(), phase["seq_gaps"].as_u64()) {
            (Some(0), Some(0)) => "none".to_string(),
            (Some(l), g) => format!("{l} lost, {} gaps", g.unwrap_or(0)),
            _ => "–".into(),
        },
    )
}

fn idle_row(r: &Value) -> String {
    let levels = r["figures"]["levels"].as_array().cloned().unwrap_or_default();
    let cells: Vec<String> = levels
        .iter()
        .map(|l| {
            format!(
                "{}: {} B (kernel {} B)",
                num(&l["open"], 0),
                num(&l["server_rss_per_connection"], 0),
                num(&l["kernel_slab_per_socket"], 0)
            )
        })
        .collect();
    format!("| {} | {} |", r["label"].as_str().unwrap_or("?"), cells.join("; "))
}

fn connect_row(r: &Value) -> String {
    let f = &r["figures"];
    format!(
        "| {} | {} | **{}** | {} | {} | {} | {} |",
        r["label"].as_str().unwrap_or("?"),
        num(&f["connected"], 0),
        num(&f["connects_per_second"], 0),
        num(&f["handshake_latency"]["p50_ms"], 1),
        num(&f["handshake_latency"]["p99_ms"], 1),
        num(&f["server_cpu_pct_during_ramp"], 0),
        num(&f["harness_cpu_pct_during_ramp"], 0),
    )
}

pub fn run(dirs: &[PathBuf]) -> Result<String, String> {
    let mut reports = Vec::new();
    for d in dirs {
        let path = d.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        reports.push(v);
    }
    let mut out = String::new();
    let of = |name: &'static str| reports.iter().filter(move |r| r["scenario"] == name);
    if of("fanout").next().is_some() {
        out.push_str("| server | subscribers | channels | phase | deliveries/s | events/s | p50 ms | p99 ms | deliveries per send | server CPU % | harness CPU % (receive) | harness read lag p99 ms | loss |\n");
        out.push_str("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in of("fanout") {
            out.push_str(&fanout_row(r));
            out.push('\n');
        }
        out.push('\n');
    }
    if of("idle").next().is_some() {
        out.push_str(
            "| server | open connections: server RSS per connection (kernel slab per socket) |\n|---|---|\n",
        );
        for r in of("idle") {
            out.push_str(&idle_row(r));
            out.push('\n');
        }
        out.push('\n');
    }
    if of("connect").next().is_some() {
        out.push_str("| server | connected | connects/s | handshake p50 ms | p99 ms | server CPU % | harness CPU % |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for r in of("connect") {
            out.push_str(&connect_row(r));
            out.push('\n');
        }
        out.push('\n');
    }
    let other: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["scenario"].as_str())
        .filter(|s| !["fanout", "idle", "connect"].contains(s))
        .collect();
    if !other.is_empty() {
        out.push_str(&format!("(no table for: {}; see their summary.txt)\n", other.join(", ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(3_141_592), "3,141,592");
    }

    #[test]
    fn a_fanout_row_shows_the_sustained_maximum() {
        let r = serde_json::json!({"label": "uWS.js", "scenario": "fanout",
            "params": {"subscribers": 10000, "channels": 1, "find_max": true},
            "figures": {"sustained_max": {"deliveries_per_second": 2_900_000.4, "achieved_events_per_second": 290.0,
                "latency": {"p50_ms": 12.34, "p99_ms": 40.0}, "server_sends": {"source": "perf", "deliveries_per_send": 9.61},
                "server_cpu_pct": 99.0, "harness_cpu_pct": 80.0, "harness_receive_cpu_pct": 60.0, "harness_read_lag": {"p99_ms": 3.26}, "lost": 0, "seq_gaps": 0}}});
        assert_eq!(
            fanout_row(&r),
            "| uWS.js | 10,000 | 1 | sustained max | **2,900,000** | 290 | 12.3 | 40.0 | 9.61 (perf) | 99 | 80 (60) | 3.3 | none |"
        );
    }
}
