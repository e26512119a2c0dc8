//! Collects the figures of `./bench/run` and prints the table.
//!
//! `add` appends records (`{scenario, proxy, metric, value}`, one JSON object
//! per line) taken from an oha JSON report, a `bench-handshake` or
//! `bench-propagate` line, or `metric=value` pairs. `table` prints, per
//! scenario and metric, the median and the spread (min–max) of every proxy
//! over the rounds, and each Portcullis column's ratio to nginx (or to the
//! column named by `--baseline`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

/// The default baseline column; ratios are against it.
const BASELINE: &str = "nginx";

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Appends records to the results file.
    Add {
        #[arg(long)]
        results: PathBuf,
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        proxy: String,
        /// An oha `--output-format json` report.
        #[arg(long)]
        oha: Option<PathBuf>,
        /// A file holding one JSON object of numbers (bench-handshake,
        /// bench-propagate); every numeric field becomes a metric.
        #[arg(long)]
        json: Option<PathBuf>,
        /// `metric=value` pairs.
        #[arg(long = "value")]
        values: Vec<String>,
    },
    /// Prints the table.
    Table {
        #[arg(long)]
        results: PathBuf,
        /// Printed above the table (how the machine was used).
        #[arg(long, default_value = "")]
        title: String,
        /// The column the others are divided by.
        #[arg(long, default_value = BASELINE)]
        baseline: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Add {
            results,
            scenario,
            proxy,
            oha,
            json,
            values,
        } => {
            let mut metrics = Vec::new();
            if let Some(path) = oha {
                metrics.extend(from_oha(&read_json(&path)?)?);
            }
            if let Some(path) = json {
                metrics.extend(numbers(&read_json(&path)?));
            }
            for pair in values {
                let (name, value) = pair.split_once('=').context("--value wants metric=value")?;
                let value = value.parse().with_context(|| format!("--value {pair}"))?;
                metrics.push((name.to_owned(), value));
            }
            metrics.extend(per_core(&metrics));
            append(&results, &scenario, &proxy, &metrics)
        }
        Command::Table {
            results,
            title,
            baseline,
        } => {
            print!("{}", table(&read_records(&results)?, &title, &baseline));
            Ok(())
        }
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(text.trim()).with_context(|| format!("{} is not JSON", path.display()))
}

/// Requests/s of successful (2xx) responses, latency percentiles, and the
/// number of failed requests, from an oha JSON report.
fn from_oha(report: &Value) -> anyhow::Result<Vec<(String, f64)>> {
    let metrics = &report["metrics"];
    let rps = metrics["requests_per_sec"]
        .as_f64()
        .context("oha report without requests_per_sec")?;
    let codes = report["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let count = |ok: bool| -> f64 {
        codes
            .iter()
            .filter(|(code, _)| code.starts_with('2') == ok)
            .filter_map(|(_, n)| n.as_f64())
            .sum()
    };
    // `+ 0.0`: an empty float sum is -0.0.
    let (good, bad) = (count(true) + 0.0, count(false) + 0.0);
    let errors: f64 = report["errorDistribution"]
        .as_object()
        .map(|errors| {
            errors
                .iter()
                .filter(|(what, _)| !what.contains("deadline"))
                .filter_map(|(_, n)| n.as_f64())
                .sum::<f64>()
                + 0.0
        })
        .unwrap_or(0.0);
    let ok_share = if good + bad > 0.0 {
        good / (good + bad)
    } else {
        0.0
    };
    Ok(vec![
        ("req/s".to_owned(), rps * ok_share),
        (
            "p50_ms".to_owned(),
            metrics["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        ),
        (
            "p99_ms".to_owned(),
            metrics["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        ),
        ("failed".to_owned(), bad + errors),
    ])
}

/// Requests per second of proxy CPU time: what one core of the proxy
/// serves. On a small machine the loader competes with the proxy for CPU,
/// so this, not the raw rate, is the cost comparison.
fn per_core(metrics: &[(String, f64)]) -> Option<(String, f64)> {
    let find = |name: &str| metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let rate = find("req/s").or_else(|| find("rps"))?;
    let cpu = find("proxy_cpu_%").filter(|cpu| *cpu > 0.0)?;
    Some(("per_core".to_owned(), rate * 100.0 / cpu))
}

fn numbers(object: &Value) -> Vec<(String, f64)> {
    object
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.as_f64()?)))
        .collect()
}

fn append(
    results: &Path,
    scenario: &str,
    proxy: &str,
    metrics: &[(String, f64)],
) -> anyhow::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(results)?;
    for (metric, value) in metrics {
        let record =
            json!({"scenario": scenario, "proxy": proxy, "metric": metric, "value": value});
        writeln!(file, "{record}")?;
    }
    Ok(())
}

struct Record {
    scenario: String,
    proxy: String,
    metric: String,
    value: f64,
}

fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        let field = |name: &str| v[name].as_str().map(str::to_owned);
        let (Some(scenario), Some(proxy), Some(metric), Some(value)) = (
            field("scenario"),
            field("proxy"),
            field("metric"),
            v["value"].as_f64(),
        ) else {
            bail!("malformed record {line}");
        };
        records.push(Record {
            scenario,
            proxy,
            metric,
            value,
        });
    }
    Ok(records)
}

/// Values of one (scenario, metric, proxy) over the rounds.
#[derive(Default)]
struct Cell(Vec<f64>);

impl Cell {
    fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    fn spread(&self) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if self.0.len() < 2 {
            return String::new();
        }
        format!(" [{}–{}]", fmt(min), fmt(max))
    }
}

fn fmt(value: f64) -> String {
    match value.abs() {
        v if v.is_nan() => "-".to_owned(),
        v if v >= 1000.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

/// Lower is better for latencies and sizes; higher for rates.
fn lower_is_better(metric: &str) -> bool {
    metric.ends_with("_ms")
        || metric.ends_with("_mb")
        || metric.ends_with("_ns")
        || metric == "failed"
        || metric == "errors"
}

fn table(records: &[Record], title: &str, baseline_proxy: &str) -> String {
    // Keep the order in which scenarios, metrics and proxies first appear.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut proxies: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, String, String), Cell> = BTreeMap::new();
    for r in records {
        let key = (r.scenario.clone(), r.metric.clone());
        if !order.contains(&key) {
            order.push(key);
        }
        if !proxies.contains(&r.proxy) {
            proxies.push(r.proxy.clone());
        }
        cells
            .entry((r.scenario.clone(), r.metric.clone(), r.proxy.clone()))
            .or_default()
            .0
            .push(r.value);
    }
    proxies.sort_by_key(|p| p != baseline_proxy);
    let mut out = String::new();
    if !title.is_empty() {
        out.push_str(title);
        out.push('\n');
    }
    let mut header = format!("{:<62}{:<14}", "scenario", "metric");
    for proxy in &proxies {
        header.push_str(&format!("{:<26}", proxy));
        if proxy != baseline_proxy {
            header.push_str(&format!("{:<8}", "ratio"));
        }
    }
    out.push_str(header.trim_end());
    out.push('\n');
    out.push_str(&"-".repeat(header.trim_end().len()));
    out.push('\n');
    for (scenario, metric) in &order {
        let cell = |proxy: &str| cells.get(&(scenario.clone(), metric.clone(), proxy.to_owned()));
        let baseline = cell(baseline_proxy).map(Cell::median);
        let label = if lower_is_better(metric) {
            format!("{metric} ↓")
        } else {
            metric.clone()
        };
        let mut line = format!("{:<62}{:<14}", scenario, label);
        for proxy in &proxies {
            let text = cell(proxy).map_or(String::new(), |c| {
                format!("{}{}", fmt(c.median()), c.spread())
            });
            line.push_str(&format!("{:<26}", text));
            if proxy != baseline_proxy {
                let ratio = match (baseline, cell(proxy)) {
                    (Some(base), Some(c)) if base > 0.0 => {
                        format!("{:.2}×", c.median() / base)
                    }
                    _ => String::new(),
                };
                line.push_str(&format!("{:<8}", ratio));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "ratio = median / {baseline_proxy} median; ↓ = lower is better, else higher is better\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(proxy: &str, metric: &str, value: f64) -> Record {
        Record {
            scenario: "keepalive".to_owned(),
            proxy: proxy.to_owned(),
            metric: metric.to_owned(),
            value,
        }
    }

    #[test]
    fn medians_of_odd_and_even_rounds() {
        assert_eq!(Cell(vec![3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(Cell(vec![4.0, 1.0, 3.0, 2.0]).median(), 2.5);
        assert!(Cell(Vec::new()).median().is_nan());
        assert_eq!(Cell(vec![1.0, 3.0, 2.0]).spread(), " [1.00–3.00]");
        assert_eq!(Cell(vec![1.0]).spread(), "");
    }

    #[test]
    fn per_core_is_the_rate_per_proxy_core() {
        let metrics = [
            ("req/s".to_owned(), 45_000.0),
            ("proxy_cpu_%".to_owned(), 90.0),
        ];
        assert_eq!(per_core(&metrics), Some(("per_core".to_owned(), 50_000.0)));
        assert_eq!(
            per_core(&metrics[..1]),
            None,
            "no CPU figure, no per-core rate"
        );
    }

    #[test]
    fn the_table_puts_nginx_first_and_divides_medians() {
        let records = [
            record("portcullis", "req/s", 60.0),
            record(BASELINE, "req/s", 40.0),
            record("portcullis", "req/s", 66.0),
            record(BASELINE, "req/s", 60.0),
            record("portcullis", "p99_ms", 1.0),
            record(BASELINE, "p99_ms", 2.0),
        ];
        let table = table(&records, "title", BASELINE);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "title");
        let header: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            header,
            ["scenario", "metric", BASELINE, "portcullis", "ratio"]
        );
        // Medians 50 and 63: 1.26×.
        let rate: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            rate,
            [
                "keepalive",
                "req/s",
                "50.0",
                "[40.0–60.0]",
                "63.0",
                "[60.0–66.0]",
                "1.26×"
            ]
        );
        let p99: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(p99, ["keepalive", "p99_ms", "↓", "2.00", "1.00", "0.50×"]);
    }

    #[test]
    fn another_column_can_be_the_baseline() {
        let records = [record("on", "req/s", 97.0), record("off", "req/s", 100.0)];
        let table = table(&records, "", "off");
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["scenario", "metric", "off", "on", "ratio"]);
        assert!(lines[2].ends_with("0.97×"), "{}", lines[2]);
        assert!(table.ends_with(
            "ratio = median / off median; ↓ = lower is better, else higher is better\n"
        ));
    }
}
