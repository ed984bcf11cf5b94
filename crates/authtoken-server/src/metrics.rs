//! Prometheus metrics (text format) for `--metrics-listen`: logins by
//! outcome, throttled answers, proofs evaluated, refused connections, and
//! request latency.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::event::Event;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    proofs: Counter,
    throttled: Counter,
    connections_refused: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    store_errors: Family<Labels, Counter>,
    store_latency: Family<Labels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authtoken");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by step (challenge or response) and outcome",
            requests.clone(),
        );
        let proofs = Counter::default();
        registry.register(
            "proofs_evaluated",
            "Digest proofs checked against a verifier (throttled attempts are not)",
            proofs.clone(),
        );
        let throttled = Counter::default();
        registry.register(
            "throttled",
            "Responses refused with 429 because their source failed too often",
            throttled.clone(),
        );
        let connections_refused = Family::<Labels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at once, by reason",
            connections_refused.clone(),
        );
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer a request (a handshake is a challenge and a response), by step",
            latency.clone(),
        );
        let store_errors = Family::<Labels, Counter>::default();
        registry.register(
            "store_errors",
            "PostgreSQL store operations that failed or timed out, by operation",
            store_errors.clone(),
        );
        let store_latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "store_duration_seconds",
            "Time of PostgreSQL store operations, by operation",
            store_latency.clone(),
        );
        Metrics {
            registry,
            requests,
            proofs,
            throttled,
            connections_refused,
            latency,
            store_errors,
            store_latency,
        }
    }
}

impl Metrics {
    pub fn answered(&self, step: &'static str, event: Event, proof_evaluated: bool, seconds: f64) {
        self.requests
            .get_or_create(&vec![("step", step), ("outcome", event.name())])
            .inc();
        if proof_evaluated {
            self.proofs.inc();
        }
        if event == Event::Throttled {
            self.throttled.inc();
        }
        self.latency
            .get_or_create(&vec![("step", step)])
            .observe(seconds);
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl crate::pgstore::StoreObserver for Metrics {
    /// One PostgreSQL store operation: its time, and whether it failed.
    fn operation(&self, operation: &'static str, seconds: f64, ok: bool) {
        self.store_latency
            .get_or_create(&vec![("operation", operation)])
            .observe(seconds);
        if !ok {
            self.store_errors
                .get_or_create(&vec![("operation", operation)])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let m = Metrics::default();
        m.answered("response", Event::Token, true, 0.002);
        m.answered("response", Event::Throttled, false, 0.0001);
        m.connection_refused("per_source");
        use crate::pgstore::StoreObserver;
        m.operation("claim", 0.001, true);
        m.operation("claim", 2.0, false);
        let text = m.render();
        for line in [
            "authtoken_requests_total{step=\"response\",outcome=\"token\"} 1",
            "authtoken_requests_total{step=\"response\",outcome=\"throttled\"} 1",
            "authtoken_proofs_evaluated_total 1",
            "authtoken_throttled_total 1",
            "authtoken_connections_refused_total{reason=\"per_source\"} 1",
            "authtoken_request_duration_seconds_count{step=\"response\"} 2",
            "authtoken_store_errors_total{operation=\"claim\"} 1",
            "authtoken_store_duration_seconds_count{operation=\"claim\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
