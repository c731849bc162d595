//! Prometheus figures for `GET /metrics`: tasks (fed by a core observer),
//! services and task queues (read at scrape time), HTTP requests (a
//! middleware), and the host as 0-robot exported it (CPU, memory, the data
//! directory's filesystem, network bytes; read at scrape time). `name[]`
//! keeps only the metrics named.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use zrobot_core::{Observer, Robot, Service, TaskRecord, TaskState};

use crate::host::HostFigures;
use crate::AppState;

/// The robot's metrics. Cheap to clone: the prometheus types are shared handles.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    services: IntGauge,
    tasks_waiting: IntGaugeVec,
    task_duration: HistogramVec,
    tasks_failed: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_in_flight: IntGauge,
    host_cpu: GaugeVec,
    host_memory: IntGaugeVec,
    data_dir_disk: IntGaugeVec,
    host_network: IntGaugeVec,
    /// Its own CPU samples: a scrape covers the time since the last scrape,
    /// whatever `GET /robot/metrics` is asked meanwhile.
    host: Arc<HostFigures>,
    /// Whose filesystem `zrobot_data_dir_filesystem_bytes` tells.
    data_dir: Option<PathBuf>,
}

impl Metrics {
    pub fn new(data_dir: Option<PathBuf>) -> Metrics {
        let services =
            IntGauge::new("zrobot_services", "Services of the robot").expect("valid metric");
        let tasks_waiting = IntGaugeVec::new(
            Opts::new(
                "zrobot_tasks_waiting",
                "Tasks waiting in the task lists of the services of each template",
            ),
            &["template"],
        )
        .expect("valid metric");
        let task_duration = HistogramVec::new(
            HistogramOpts::new(
                "zrobot_task_duration_seconds",
                "How long finished tasks ran, by template and action",
            )
            .buckets(exponential_buckets(0.001, 4.0, 10).expect("valid buckets")),
            &["template", "action"],
        )
        .expect("valid metric");
        let tasks_failed = IntCounterVec::new(
            Opts::new(
                "zrobot_tasks_failed_total",
                "Tasks that ended in error, by template and action",
            ),
            &["template", "action"],
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "zrobot_http_requests_total",
                "HTTP requests answered, by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "zrobot_http_request_duration_seconds",
                "How long HTTP requests took, by route",
            )
            .buckets(exponential_buckets(0.0005, 4.0, 10).expect("valid buckets")),
            &["method", "route"],
        )
        .expect("valid metric");
        let http_in_flight = IntGauge::new(
            "zrobot_http_requests_in_flight",
            "HTTP requests being answered (long polls included)",
        )
        .expect("valid metric");
        let host_cpu = GaugeVec::new(
            Opts::new(
                "zrobot_host_cpu_percent",
                "Share of the host's CPU time in each mode since the previous scrape",
            ),
            &["mode"],
        )
        .expect("valid metric");
        let host_memory = IntGaugeVec::new(
            Opts::new("zrobot_host_memory_bytes", "The host's memory, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let data_dir_disk = IntGaugeVec::new(
            Opts::new(
                "zrobot_data_dir_filesystem_bytes",
                "The filesystem of the robot's data directory: size, free, available to the robot",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let host_network = IntGaugeVec::new(
            Opts::new(
                "zrobot_host_network_bytes",
                "Bytes each network interface of the host received and sent since boot",
            ),
            &["interface", "direction"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        for c in [
            Box::new(services.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(tasks_waiting.clone()),
            Box::new(task_duration.clone()),
            Box::new(tasks_failed.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(http_in_flight.clone()),
            Box::new(host_cpu.clone()),
            Box::new(host_memory.clone()),
            Box::new(data_dir_disk.clone()),
            Box::new(host_network.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            services,
            tasks_waiting,
            task_duration,
            tasks_failed,
            http_requests,
            http_duration,
            http_in_flight,
            host_cpu,
            host_memory,
            data_dir_disk,
            host_network,
            host: Arc::new(HostFigures::default()),
            data_dir,
        }
    }

    /// The Prometheus text of the metrics named in `names` (all when it is
    /// empty), with the robot's and the host's gauges read now.
    pub fn render(&self, robot: &Robot, names: &[String]) -> String {
        self.read_host();
        let services = robot.find_services(&Default::default());
        self.services.set(services.len() as i64);
        // By template, never by service: `/metrics` is anonymous, and names
        // of private services are not for anyone to read. Reset so that
        // templates without services do not linger as series.
        let mut waiting: std::collections::BTreeMap<String, i64> = Default::default();
        for svc in &services {
            *waiting.entry(svc.template_uid()).or_default() += svc.queue_len() as i64;
        }
        self.tasks_waiting.reset();
        for (template, n) in &waiting {
            self.tasks_waiting
                .with_label_values(&[template.as_str()])
                .set(*n);
        }
        let mut families = self.registry.gather();
        if !names.is_empty() {
            families.retain(|f| names.iter().any(|n| n == f.name()));
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail but for invalid metrics, which `new` rules out.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Reads the host's figures into their gauges.
    fn read_host(&self) {
        let cpu = self.host.cpu();
        for (mode, share) in [
            ("user", cpu.user),
            ("nice", cpu.nice),
            ("system", cpu.system),
            ("idle", cpu.idle),
            ("iowait", cpu.iowait),
            ("irq", cpu.irq),
            ("softirq", cpu.softirq),
        ] {
            self.host_cpu.with_label_values(&[mode]).set(share);
        }
        let memory = self.host.memory();
        for (kind, bytes) in [
            ("total", memory.total),
            ("active", memory.active),
            ("free", memory.free),
            ("cached", memory.cached),
            ("swap_total", memory.swap_total),
            ("swap_free", memory.swap_free),
        ] {
            self.host_memory
                .with_label_values(&[kind])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(disk) = self.data_dir.as_deref().and_then(crate::host::filesystem) {
            for (kind, bytes) in [
                ("size", disk.size),
                ("free", disk.free),
                ("available", disk.available),
            ] {
                self.data_dir_disk
                    .with_label_values(&[kind])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        self.host_network.reset();
        for (interface, received, sent) in crate::host::network() {
            for (direction, bytes) in [("received", received), ("sent", sent)] {
                self.host_network
                    .with_label_values(&[interface.as_str(), direction])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    }
}

impl Observer for Metrics {
    fn task_finished(&self, _service: &Service, task: &TaskRecord) {
        let labels = [task.template_uid.as_str(), task.action_name.as_str()];
        if let Some(d) = task.duration {
            self.task_duration.with_label_values(&labels).observe(d);
        }
        if task.state == TaskState::Error {
            self.tasks_failed.with_label_values(&labels).inc();
        }
    }
}

/// Counts every request by its route. Every label comes from a fixed set,
/// so that no caller can add series: the route is the matched path pattern
/// (never the raw path; one `unmatched` for the rest) and the method one of
/// HTTP's own (one `OTHER` for invented ones).
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let m = &state.metrics;
    m.http_in_flight.inc();
    // Decremented on drop too: a client that hangs up cancels this future.
    let _in_flight = scopeguard(&m.http_in_flight);
    let resp = next.run(req).await;
    m.http_requests
        .with_label_values(&[method, route.as_str(), resp.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[method, route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// The method as a label: HTTP's own methods, else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge when dropped.
struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn scopeguard(g: &IntGauge) -> InFlight<'_> {
    InFlight(g)
}
