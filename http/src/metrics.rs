//! Prometheus metrics shared by the daemons: the text exposition of a
//! [`Registry`] (prometheus-client), and the constant metrics a collector
//! emits at scrape time from state the daemon already keeps.
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use prometheus_client;

/// `GET /metrics`: the registry in the Prometheus text format (0.0.4).
pub fn exposition(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Labels as name/value pairs.
pub type Labels = Vec<(&'static str, String)>;

/// One metric with its samples, emitted by a collector at scrape time.
pub struct Emit<'a, 'e> {
    encoder: &'a mut DescriptorEncoder<'e>,
}

impl<'a, 'e> Emit<'a, 'e> {
    pub fn new(encoder: &'a mut DescriptorEncoder<'e>) -> Emit<'a, 'e> {
        Emit { encoder }
    }

    /// A gauge `name` with one sample per `(labels, value)`.
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) -> Result<(), std::fmt::Error> {
        self.metric(name, help, samples, ConstGauge::new)
    }

    /// A gauge `name` of whole numbers, one sample per `(labels, value)`.
    pub fn int_gauges(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, i64)>,
    ) -> Result<(), std::fmt::Error> {
        self.metric(name, help, samples, ConstGauge::new)
    }

    /// A counter `name` (the `_total` suffix is added) with one sample per
    /// `(labels, value)`.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> Result<(), std::fmt::Error> {
        self.metric(name, help, samples, ConstCounter::new)
    }

    /// One metric `name`, each sample's value made a metric by `make` (its
    /// type is the metric's).
    fn metric<V: Default, M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, V)>,
        make: impl Fn(V) -> M,
    ) -> Result<(), std::fmt::Error> {
        let kind = make(V::default()).metric_type();
        let mut metric = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, v) in samples {
            make(v).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A family of histograms of durations in seconds, buckets from 1 ms to
/// about 65 s.
pub fn seconds_histograms<L>() -> Family<L, Histogram>
where
    L: Clone + std::hash::Hash + Eq + prometheus_client::encoding::EncodeLabelSet,
{
    Family::new_with_constructor(|| {
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 17,
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::collector::Collector;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let mut e = Emit::new(&mut encoder);
            e.gauges(
                "myha_test_lag_seconds",
                "A lag.",
                [(vec![("host", "db2".to_string())], 1.5)],
            )?;
            e.counters(
                "myha_test_things",
                "Things.",
                [(vec![("cluster", "c\"1".to_string())], 3)],
            )
        }
    }

    #[test]
    fn collected_metrics_have_help_type_and_escaped_labels() {
        let mut r = Registry::default();
        r.register_collector(Box::new(Two));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("# HELP myha_test_lag_seconds A lag."),
            "{text}"
        );
        assert!(
            text.contains("# TYPE myha_test_lag_seconds gauge"),
            "{text}"
        );
        assert!(
            text.contains("myha_test_lag_seconds{host=\"db2\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE myha_test_things_total counter"),
            "{text}"
        );
        assert!(
            text.contains("myha_test_things_total{cluster=\"c\\\"1\"} 3"),
            "{text}"
        );
    }
}
