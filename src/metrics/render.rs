//! The Prometheus text exposition format (version 0.0.4), from plain numbers; no IO.

use std::fmt::Write;

use super::{ERROR_KINDS, LATENCY_BUCKETS, STATUSES};

/// Content type of the text format, as Prometheus asks for it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A histogram's per-bucket counts (the last one is above every bound) and its sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_nanos: u64,
}

impl HistogramCounts {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// What the process looks like from `/proc`; `None` fields are left out of the output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStats {
    pub resident_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Everything one scrape shows, summed over workers.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (route label, index in `STATUSES`, latencies) for every pair seen at least once.
    pub requests: Vec<(&'static str, usize, HistogramCounts)>,
    /// (label value, count) of every value of each registered set.
    pub bids: Vec<(&'static str, u64)>,
    pub fast_path: Vec<(&'static str, u64)>,
    pub keys: Vec<(&'static str, u64)>,
    pub pg_query: HistogramCounts,
    pub pg_errors: [u64; ERROR_KINDS.len()],
    pub pg_reconnects: u64,
    pub redis_command: HistogramCounts,
    pub redis_errors: [u64; ERROR_KINDS.len()],
    pub redis_reconnects: u64,
    pub connections_accepted: u64,
    pub keys_swept: u64,
    /// Open connections, indexed by worker.
    pub open_connections: Vec<u64>,
    /// Live-update streams open.
    pub open_streams: u64,
    pub start_time_seconds: f64,
    pub process: Option<ProcessStats>,
}

/// What the process reads at scrape time from outside the registry.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Open connections, indexed by worker.
    pub open_connections: Vec<u64>,
    pub open_streams: u64,
}

/// Kinds of Redis errors: every kind but `auth` (Redis refuses credentials with an error reply,
/// counted as `server`).
const REDIS_ERROR_KINDS: usize = ERROR_KINDS.len() - 1;

/// Renders `s` as the text format. `version` goes into `gavel_build_info`.
pub fn render(s: &Snapshot, version: &str) -> String {
    let mut e = Exposition::default();
    e.family(
        "gavel_build_info",
        "gauge",
        "Always 1; the labels describe the running build.",
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    e.sample(
        "gavel_build_info",
        &[("version", version), ("profile", profile)],
        1,
    );

    e.family(
        "gavel_http_request_duration_seconds",
        "histogram",
        "Time from a request's complete arrival (or the HTTP layer's refusal of it) to its \
         response in the connection's output buffer, by route template and status.",
    );
    for (route, status, h) in &s.requests {
        let labels = [
            ("route", *route),
            ("status", STATUSES.get(*status).copied().unwrap_or("other")),
        ];
        e.histogram("gavel_http_request_duration_seconds", &labels, h);
    }

    e.family(
        "gavel_http_connections_accepted_total",
        "counter",
        "Connections accepted on the public listener.",
    );
    e.sample(
        "gavel_http_connections_accepted_total",
        &[],
        s.connections_accepted,
    );
    e.family(
        "gavel_open_connections",
        "gauge",
        "Connections open on the public listener now (idle and parked ones included), by worker.",
    );
    for (worker, open) in s.open_connections.iter().enumerate() {
        let worker = worker.to_string();
        e.sample("gavel_open_connections", &[("worker", &worker)], *open);
    }
    e.family(
        "gavel_live_streams_open",
        "gauge",
        "Live-update streams (GET /api/auctions/{id}/events) open now; each is also an open connection.",
    );
    e.sample("gavel_live_streams_open", &[], s.open_streams);

    e.family(
        "gavel_bids_total",
        "counter",
        "Bids decided, by outcome (by PostgreSQL, or too_low by the Redis fast path).",
    );
    for (outcome, n) in &s.bids {
        e.sample("gavel_bids_total", &[("outcome", outcome)], *n);
    }
    e.family(
        "gavel_bid_fast_path_total",
        "counter",
        "Redis fast-path lookups: hit answered the bid without PostgreSQL, miss sent it on.",
    );
    for (result, n) in &s.fast_path {
        e.sample("gavel_bid_fast_path_total", &[("result", result)], *n);
    }
    e.family(
        "gavel_idempotent_requests_total",
        "counter",
        "Requests with an Idempotency-Key: fresh decided now, replayed answered from the stored \
         answer, mismatch refused (the key was used with another request).",
    );
    for (result, n) in &s.keys {
        e.sample("gavel_idempotent_requests_total", &[("result", result)], *n);
    }
    e.family(
        "gavel_idempotency_keys_swept_total",
        "counter",
        "Expired idempotency keys deleted by this server's sweeper.",
    );
    e.sample("gavel_idempotency_keys_swept_total", &[], s.keys_swept);

    e.family(
        "gavel_postgres_query_duration_seconds",
        "histogram",
        "PostgreSQL round trips answered: from queueing a request on the pipeline to its reply.",
    );
    e.histogram("gavel_postgres_query_duration_seconds", &[], &s.pg_query);
    e.family(
        "gavel_postgres_errors_total",
        "counter",
        "PostgreSQL requests that failed, by kind.",
    );
    for (kind, n) in ERROR_KINDS.iter().zip(s.pg_errors) {
        e.sample("gavel_postgres_errors_total", &[("kind", kind)], n);
    }
    e.family(
        "gavel_postgres_reconnects_total",
        "counter",
        "PostgreSQL connections re-established after one broke.",
    );
    e.sample("gavel_postgres_reconnects_total", &[], s.pg_reconnects);

    e.family(
        "gavel_redis_command_duration_seconds",
        "histogram",
        "Redis commands answered: from queueing a command on the pipeline to its reply.",
    );
    e.histogram(
        "gavel_redis_command_duration_seconds",
        &[],
        &s.redis_command,
    );
    e.family(
        "gavel_redis_errors_total",
        "counter",
        "Redis commands that failed, by kind.",
    );
    for (kind, n) in ERROR_KINDS
        .iter()
        .zip(s.redis_errors)
        .take(REDIS_ERROR_KINDS)
    {
        e.sample("gavel_redis_errors_total", &[("kind", kind)], n);
    }
    e.family(
        "gavel_redis_reconnects_total",
        "counter",
        "Redis connections re-established after one broke.",
    );
    e.sample("gavel_redis_reconnects_total", &[], s.redis_reconnects);

    e.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    e.sample_f64("process_start_time_seconds", &[], s.start_time_seconds);
    if let Some(p) = &s.process {
        let stats = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
        ];
        for (name, help, value) in stats {
            if let Some(v) = value {
                e.family(name, "gauge", help);
                e.sample(name, &[], v);
            }
        }
    }
    e.out
}

/// A text-format writer: families, samples, histograms, with label values escaped.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// The `# HELP` and `# TYPE` lines that open a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(&mut self.out, help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels, None);
        self.out.push(' ');
        push_f64(&mut self.out, value);
        self.out.push('\n');
    }

    /// `_bucket` lines (cumulative, ending with `+Inf`), `_sum` in seconds and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramCounts) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        let bounds = LATENCY_BUCKETS.iter().map(|(_, le)| *le).chain(["+Inf"]);
        for (le, n) in bounds.zip(h.buckets) {
            cumulative += n;
            self.series(&bucket, labels, Some(le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        self.sample_f64(&format!("{name}_sum"), labels, h.sum_nanos as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (key, value)) in all.enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value, true);
            self.out.push('"');
        }
        if !labels.is_empty() || le.is_some() {
            self.out.push('}');
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Escapes as the format requires: backslash and newline everywhere, the double quote in label
/// values only.
fn escape_into(out: &mut String, text: &str, label_value: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Floats as Go's `strconv` would read them back; the format spells infinities and NaN its way.
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::status_index;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn families_and_samples() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "Things.");
        e.sample("x_total", &[], 3);
        e.sample("x_total", &[("a", "b"), ("c", "d")], 4);
        assert_eq!(
            lines(&e.finish()),
            [
                "# HELP x_total Things.",
                "# TYPE x_total counter",
                "x_total 3",
                "x_total{a=\"b\",c=\"d\"} 4",
            ]
        );
    }

    #[test]
    fn escaping() {
        let mut e = Exposition::default();
        e.family("y", "gauge", "back\\slash \"quoted\"\nnext");
        e.sample("y", &[("v", "a\\b\"c\nd")], 1);
        assert_eq!(
            lines(&e.finish()),
            [
                "# HELP y back\\\\slash \"quoted\"\\nnext",
                "# TYPE y gauge",
                "y{v=\"a\\\\b\\\"c\\nd\"} 1",
            ]
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut h = HistogramCounts::default();
        h.buckets[0] = 2;
        h.buckets[3] = 1;
        h.buckets[LATENCY_BUCKETS.len()] = 4; // above every bound
        h.sum_nanos = 1_500_000_000;
        let mut e = Exposition::default();
        e.histogram("z_seconds", &[("route", "/x")], &h);
        let text = e.finish();
        let l = lines(&text);
        assert_eq!(l.len(), LATENCY_BUCKETS.len() + 3);
        assert_eq!(l[0], "z_seconds_bucket{route=\"/x\",le=\"0.00005\"} 2");
        assert_eq!(l[2], "z_seconds_bucket{route=\"/x\",le=\"0.00025\"} 2");
        assert_eq!(l[3], "z_seconds_bucket{route=\"/x\",le=\"0.0005\"} 3");
        assert_eq!(l[14], "z_seconds_bucket{route=\"/x\",le=\"2.5\"} 3");
        assert_eq!(l[15], "z_seconds_bucket{route=\"/x\",le=\"+Inf\"} 7");
        assert_eq!(l[16], "z_seconds_sum{route=\"/x\"} 1.5");
        assert_eq!(l[17], "z_seconds_count{route=\"/x\"} 7");
        let mut e = Exposition::default();
        e.histogram("u_seconds", &[], &HistogramCounts::default());
        let text = e.finish();
        assert!(text.starts_with("u_seconds_bucket{le=\"0.00005\"} 0\n"));
        assert!(text.ends_with("u_seconds_sum 0\nu_seconds_count 0\n"));
    }

    #[test]
    fn floats() {
        let mut s = String::new();
        for v in [0.000123, 2.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            push_f64(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0.000123 2 +Inf -Inf NaN ");
    }

    fn full_snapshot() -> Snapshot {
        let mut h = HistogramCounts::default();
        h.buckets[1] = 5;
        h.sum_nanos = 400_000;
        Snapshot {
            requests: vec![("/api/bids", status_index(201), h.clone())],
            bids: vec![
                ("accepted", 1),
                ("too_low", 2),
                ("not_open", 3),
                ("forbidden", 4),
                ("not_found", 5),
            ],
            fast_path: vec![("hit", 6), ("miss", 7)],
            keys: vec![("fresh", 8), ("replayed", 9), ("mismatch", 10)],
            pg_query: h.clone(),
            pg_errors: [1, 0, 0, 0, 0, 0],
            pg_reconnects: 2,
            redis_command: h,
            redis_errors: [0, 0, 1, 0, 0, 0],
            redis_reconnects: 3,
            connections_accepted: 9,
            keys_swept: 11,
            open_connections: vec![4, 0],
            open_streams: 3,
            start_time_seconds: 1_700_000_000.25,
            process: Some(ProcessStats {
                resident_memory_bytes: Some(1 << 20),
                open_fds: Some(12),
                max_fds: None,
            }),
        }
    }

    #[test]
    fn a_whole_scrape() {
        let text = render(&full_snapshot(), "1.2.3");
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let build = format!("gavel_build_info{{version=\"1.2.3\",profile=\"{profile}\"}} 1");
        for line in [
            build.as_str(),
            "gavel_http_request_duration_seconds_bucket{route=\"/api/bids\",status=\"201\",le=\"0.0001\"} 5",
            "gavel_http_request_duration_seconds_count{route=\"/api/bids\",status=\"201\"} 5",
            "gavel_http_request_duration_seconds_sum{route=\"/api/bids\",status=\"201\"} 0.0004",
            "gavel_bids_total{outcome=\"accepted\"} 1",
            "gavel_bids_total{outcome=\"not_found\"} 5",
            "gavel_bid_fast_path_total{result=\"miss\"} 7",
            "gavel_idempotent_requests_total{result=\"mismatch\"} 10",
            "gavel_idempotency_keys_swept_total 11",
            "gavel_postgres_query_duration_seconds_count 5",
            "gavel_postgres_errors_total{kind=\"unavailable\"} 1",
            "gavel_postgres_errors_total{kind=\"auth\"} 0",
            "gavel_postgres_reconnects_total 2",
            "gavel_redis_errors_total{kind=\"timeout\"} 1",
            "gavel_redis_reconnects_total 3",
            "gavel_http_connections_accepted_total 9",
            "gavel_open_connections{worker=\"0\"} 4",
            "gavel_open_connections{worker=\"1\"} 0",
            "gavel_live_streams_open 3",
            "process_start_time_seconds 1700000000.25",
            "process_resident_memory_bytes 1048576",
            "process_open_fds 12",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(!text.contains("gavel_redis_errors_total{kind=\"auth\"}"));
        assert!(!text.contains("process_max_fds"));
        assert!(text.ends_with('\n'));
    }

    /// Prometheus naming: counters end in `_total`, histograms in a base unit (`_seconds`), no
    /// gauge pretends to be a counter; every sample belongs to the family declared just before
    /// it, and each family is declared once.
    #[test]
    fn names_follow_prometheus_conventions() {
        let text = render(&full_snapshot(), "v");
        let mut declared = std::collections::HashSet::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}"
                );
                match kind {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                    "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                    other => panic!("unexpected type {other}"),
                }
                current = Some((name.to_owned(), kind.to_owned()));
            } else if !line.starts_with('#') {
                let series = line.split(['{', ' ']).next().unwrap();
                let (family, kind) = current.as_ref().expect("sample before any TYPE");
                let ok = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| series == format!("{family}{s}")),
                    _ => series == family,
                };
                assert!(ok, "{series} under {family}");
            }
        }
    }
}
