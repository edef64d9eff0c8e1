//! The pauses between tries of something that failed and may pass later (an HTTP API, S3,
//! PostgreSQL): one shape for both daemons.

use std::time::Duration;

/// Exponential backoff with jitter, from `first` up to `max` (before jitter), never ending: the
/// caller decides how many tries. The jitter keeps daemons retrying together from hitting a
/// recovering service in step.
pub fn exponential(first: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}
