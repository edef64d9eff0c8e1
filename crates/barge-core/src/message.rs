//! Where a raw batch is archived and the SQS message that announces it.
//!
//! The message body is versioned JSON so that the importer and transformer can be upgraded
//! independently: a transformer rejects a version it does not know instead of guessing, and
//! ignores fields it does not know within its version, so that fields can be added to version 1
//! without upgrading every transformer first.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The only message version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// Body of the SQS message the importer sends after archiving a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMessage {
    /// Always [`MESSAGE_VERSION`].
    pub version: u32,
    /// Name of the source the batch was fetched from.
    pub source: String,
    /// Bucket holding the raw object.
    pub bucket: String,
    /// Key of the raw object.
    pub key: String,
    /// Number of records in the batch (elements of the JSON array).
    pub record_count: u64,
    /// Hex SHA-256 of the object's bytes, checked by the transformer before loading.
    pub sha256: String,
    /// When the importer received the response.
    pub fetched_at: DateTime<Utc>,
    /// Set only by `transformer replay`: the id of the replay run that announced the object
    /// again. The ledger keys a replay's load on it, so the object loads once more per replay
    /// (and once only, however often SQS delivers the replay's message). Absent from the
    /// importer's messages; a transformer older than this field ignores it and finds the object
    /// loaded already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

/// Why an SQS message body is not a batch this build can load.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or JSON without the fields of a batch message.
    #[error("not a barge batch message: {0}")]
    Malformed(#[source] serde_json::Error),
    /// Written by a newer (or foreign) producer.
    #[error("unsupported batch message version {0} (this build reads version {MESSAGE_VERSION})")]
    UnsupportedVersion(u64),
}

impl BatchMessage {
    /// The JSON body to send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings and numbers always serializes")
    }

    /// Parses a body, checking the version before the fields so that a future format gets a
    /// clear "unsupported version" instead of a confusing field error.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u64,
        }
        let Versioned { version } = serde_json::from_str(body).map_err(MessageError::Malformed)?;
        if version != u64::from(MESSAGE_VERSION) {
            return Err(MessageError::UnsupportedVersion(version));
        }
        serde_json::from_str(body).map_err(MessageError::Malformed)
    }
}

/// The S3 key of a raw batch: `<prefix>/<source>/<yyyy>/<mm>/<dd>/<file_name>`, partitioned by
/// the UTC fetch date so that a date range can be listed and replayed. The importer names its
/// files `<uuidv7>.json` or `<uuidv7>.json.gz`: unique, and in creation order.
pub fn archive_key(
    prefix: &str,
    source: &str,
    fetched_at: DateTime<Utc>,
    file_name: &str,
) -> String {
    let date = fetched_at.format("%Y/%m/%d");
    format!(
        "{}{date}/{file_name}",
        archive_source_prefix(prefix, source)
    )
}

/// The key prefix of every archived batch of `source`, ending in `/`: what `transformer replay`
/// lists.
pub fn archive_source_prefix(prefix: &str, source: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        format!("{source}/")
    } else {
        format!("{prefix}/{source}/")
    }
}

/// The `<yyyy>/<mm>/<dd>` of a date partition, as [`archive_key`] writes it: keys sort by it.
pub fn archive_partition(date: NaiveDate) -> String {
    date.format("%Y/%m/%d").to_string()
}

/// The UTC fetch date of an archived batch of `source` from its key ([`archive_key`]'s layout),
/// or `None` for a key not in that layout.
pub fn archive_date(prefix: &str, source: &str, key: &str) -> Option<NaiveDate> {
    let rest = key.strip_prefix(&archive_source_prefix(prefix, source))?;
    let mut parts = rest.splitn(4, '/');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().filter(|name| !name.is_empty())?;
    let two_digits = |part: &str| part.len() == 2;
    if year.len() != 4 || !two_digits(month) || !two_digits(day) {
        return None;
    }
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchMessage {
        BatchMessage {
            version: MESSAGE_VERSION,
            source: "posts".into(),
            bucket: "barge-raw".into(),
            key: "raw/posts/2026/11/24/x.json".into(),
            record_count: 100,
            sha256: "ab".repeat(32),
            fetched_at: "2026-11-24T01:02:03Z".parse().unwrap(),
            replay: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let message = sample();
        assert_eq!(BatchMessage::parse(&message.to_json()).unwrap(), message);
    }

    #[test]
    fn documented_body_parses() {
        let body = r#"{"version":1,"source":"posts","bucket":"barge-raw","key":"raw/posts/2026/11/24/x.json","record_count":100,"sha256":"abababababababababababababababababababababababababababababababab","fetched_at":"2026-11-24T01:02:03Z"}"#;
        assert_eq!(BatchMessage::parse(body).unwrap(), sample());
    }

    #[test]
    fn only_a_replay_carries_its_id() {
        assert!(
            !sample().to_json().contains("replay"),
            "importer bodies unchanged"
        );
        let replay = BatchMessage {
            replay: Some("0190f2a0-replay".into()),
            ..sample()
        };
        let body = replay.to_json();
        assert!(body.contains(r#""replay":"0190f2a0-replay""#), "{body}");
        assert_eq!(BatchMessage::parse(&body).unwrap(), replay);
    }

    #[test]
    fn fields_added_within_version_1_are_ignored() {
        let mut body: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        body["added_later"] = serde_json::json!({"anything": [1, 2]});
        assert_eq!(BatchMessage::parse(&body.to_string()).unwrap(), sample());
    }

    #[test]
    fn foreign_bodies_are_rejected_clearly() {
        let err = BatchMessage::parse(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#);
        assert!(
            err.unwrap_err()
                .to_string()
                .starts_with("not a barge batch message")
        );
        let err = BatchMessage::parse(r#"{"version":2,"anything":true}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported batch message version 2 (this build reads version 1)"
        );
        assert!(BatchMessage::parse("not json").is_err());
    }

    #[test]
    fn keys_are_partitioned_by_utc_date() {
        let at = "2026-01-05T23:59:59Z".parse().unwrap();
        assert_eq!(
            archive_key("raw", "posts", at, "r1.json"),
            "raw/posts/2026/01/05/r1.json"
        );
        assert_eq!(
            archive_key("raw/", "posts", at, "r1.json.gz"),
            "raw/posts/2026/01/05/r1.json.gz"
        );
        assert_eq!(
            archive_key("", "posts", at, "r1.json"),
            "posts/2026/01/05/r1.json"
        );
    }

    #[test]
    fn the_fetch_date_is_read_back_from_an_archive_key() {
        let at: DateTime<Utc> = "2026-01-05T23:59:59Z".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 1, 5);
        for prefix in ["raw", "raw/", ""] {
            let key = archive_key(prefix, "posts", at, "r1.json.gz");
            assert_eq!(archive_date(prefix, "posts", &key), date, "{key}");
            assert_eq!(archive_date(prefix, "comments", &key), None, "{key}");
        }
        for foreign in [
            "raw/posts/2026/01/05/",
            "raw/posts/2026/1/05/r1.json",
            "raw/posts/2026/02/30/r1.json",
            "raw/posts/latest.json",
            "raw/posts2/2026/01/05/r1.json",
        ] {
            assert_eq!(archive_date("raw", "posts", foreign), None, "{foreign}");
        }
        assert_eq!(archive_partition(date.unwrap()), "2026/01/05");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn every_message_round_trips(
                source in "[a-z0-9][a-z0-9_-]{0,63}",
                bucket in "[a-z0-9.-]{3,63}",
                key in "\\PC{0,300}",
                record_count in any::<u64>(),
                sha256 in "[0-9a-f]{64}",
                millis in 0_i64..32_503_680_000_000,
                replay in proptest::option::of("[0-9a-f-]{36}"),
            ) {
                let message = BatchMessage {
                    version: MESSAGE_VERSION,
                    source,
                    bucket,
                    key,
                    record_count,
                    sha256,
                    fetched_at: DateTime::from_timestamp_millis(millis).unwrap(),
                    replay,
                };
                prop_assert_eq!(BatchMessage::parse(&message.to_json()).unwrap(), message);
            }

            #[test]
            fn any_body_parses_or_is_refused_without_panicking(body in "\\PC*") {
                let _ = BatchMessage::parse(&body);
            }

            #[test]
            fn any_other_version_is_refused_by_number(version in any::<u64>().prop_filter("not ours", |v| *v != 1)) {
                let body = format!(r#"{{"version":{version},"source":"posts"}}"#);
                let err = BatchMessage::parse(&body).unwrap_err();
                prop_assert!(matches!(err, MessageError::UnsupportedVersion(v) if v == version));
            }
        }
    }
}
