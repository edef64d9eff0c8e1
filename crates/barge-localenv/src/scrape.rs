//! Reading a daemon's operations endpoint as Prometheus and a health checker would: a GET, and
//! the `/metrics` text parsed by a Prometheus text-format parser.

use std::net::SocketAddr;

use prometheus_parse::{Scrape, Value};

/// GETs `path` from the endpoint at `address`: the status code and the body.
pub async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .unwrap_or_else(|err| panic!("GET {path} from {address}: {err}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("read the body"))
}

/// A parsed scrape of `/metrics`.
#[derive(Debug)]
pub struct Metrics(Scrape);

impl Metrics {
    /// Scrapes `/metrics` at `address`; panics unless it answers 200 with text the parser reads.
    pub async fn scrape(address: SocketAddr) -> Self {
        let (status, body) = get(address, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        Self::parse(&body)
    }

    /// Parses the text of a scrape.
    pub fn parse(text: &str) -> Self {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        Self(Scrape::parse(lines).expect("the scrape parses as the Prometheus text format"))
    }

    /// The value of the sample `name` whose labels include `labels`; `None` if there is none.
    /// Panics if several match, or on a histogram (ask for its `_count` or `_sum`).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(label, value)| sample.labels.get(label) == Some(*value))
            })
            .map(|sample| match sample.value {
                Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => value,
                ref other => panic!("{name} is not a single value: {other:?}"),
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {matching:?}"
        );
        matching.first().copied()
    }
}
