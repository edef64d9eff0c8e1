//! What a message on the batch queue announces: a batch the importer archived; objects S3 reports
//! created (its event notifications, for files other systems drop under a source's landing
//! prefix); or the test event S3 sends once when a bucket notification is configured
//! (acknowledged and ignored).
//!
//! An S3 event notification carries one or more records, each naming a bucket and a key. Keys
//! arrive URL-encoded as in an HTML form: AWS writes a space as `+` (and a `+` as `%2B`),
//! LocalStack writes it as `%20`; [`decode_key`] reads both.

use std::borrow::Cow;

use barge_core::BatchMessage;
use barge_core::message::MessageError;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A parsed message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An archived batch to load.
    Batch(BatchMessage),
    /// S3's `s3:TestEvent`: nothing to load.
    S3TestEvent,
    /// An S3 event notification: objects created, one per record, in the records' order.
    S3Objects(Vec<CreatedObject>),
}

/// An object an S3 event notification reports created (`ObjectCreated:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    /// The event, e.g. `ObjectCreated:Put`.
    pub event_name: String,
    /// The event's `eventTime`, when S3 finished the request that created the object: the
    /// object's `fetched_at`.
    pub event_time: DateTime<Utc>,
    /// Its bucket.
    pub bucket: String,
    /// Its key, decoded.
    pub key: String,
    /// Its size in bytes, when the event says.
    pub size: Option<u64>,
    /// Its version, in a versioned bucket: the one the event is about, whatever was written
    /// under the key since.
    pub version_id: Option<String>,
    /// Its ETag, as the event writes it (without quotes): in a bucket without versions, what
    /// tells the bytes the event is about from bytes put under the key since.
    pub e_tag: Option<String>,
}

impl CreatedObject {
    /// An empty object whose key ends in `/`: the "folder" the S3 console creates, which holds no
    /// records and is not a file to load.
    pub fn is_folder_marker(&self) -> bool {
        self.key.ends_with('/') && self.size == Some(0)
    }
}

/// Why a message body announces nothing this build can load.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// Not a batch message this build reads (nor an S3 event).
    #[error(transparent)]
    Batch(#[from] MessageError),
    /// It has `Records`, but not the shape of an S3 event notification.
    #[error("not an S3 event notification: {0}")]
    MalformedEvent(#[source] serde_json::Error),
    /// An S3 event notification without a record.
    #[error("S3 event notification without records")]
    NoRecords,
    /// A record of another event version or service, or an event other than an object's
    /// creation (a removal, a restore, a replication…).
    #[error("{0}")]
    UnsupportedEvent(Box<UnsupportedEvent>),
    /// A key whose percent-escapes do not decode to UTF-8 text.
    #[error(
        "S3 event record {index}: key {key:?} of bucket {bucket} does not decode to UTF-8 \
         (keys are URL-encoded UTF-8)"
    )]
    UndecodableKey {
        /// The record's position in `Records`, from 0.
        index: usize,
        /// The bucket.
        bucket: String,
        /// The key as it arrived.
        key: String,
    },
}

/// A record of an S3 event notification that announces nothing to load.
#[derive(Debug, thiserror::Error)]
#[error(
    "S3 event record {index}: {event_source} event {event_name:?} (version {event_version}) for \
     s3://{bucket}/{key}: only aws:s3 ObjectCreated:* events of version 2.x announce objects to \
     load"
)]
pub struct UnsupportedEvent {
    /// The record's position in `Records`, from 0.
    pub index: usize,
    /// `eventSource`.
    pub event_source: String,
    /// `eventName`.
    pub event_name: String,
    /// `eventVersion`.
    pub event_version: String,
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
}

/// One record of an S3 event notification, as far as barge reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventRecord {
    event_version: String,
    event_source: String,
    event_name: String,
    event_time: DateTime<Utc>,
    s3: EventS3,
}

#[derive(Deserialize)]
struct EventS3 {
    bucket: EventBucket,
    object: EventObject,
}

#[derive(Deserialize)]
struct EventBucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventObject {
    key: String,
    size: Option<u64>,
    version_id: Option<String>,
    e_tag: Option<String>,
}

impl Notice {
    /// Parses a body; anything that is neither a batch message this build reads, nor an S3 event
    /// notification of created objects, nor an S3 test event is an error saying why. A
    /// notification with any record barge cannot load is refused whole.
    pub fn parse(body: &str) -> Result<Self, NoticeError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "Event")]
            event: Option<String>,
            #[serde(rename = "Records")]
            records: Option<serde::de::IgnoredAny>,
        }
        match serde_json::from_str::<Probe>(body) {
            Ok(probe) if probe.event.as_deref() == Some("s3:TestEvent") => Ok(Self::S3TestEvent),
            Ok(probe) if probe.records.is_some() => parse_event(body).map(Self::S3Objects),
            _ => Ok(Self::Batch(BatchMessage::parse(body)?)),
        }
    }
}

fn parse_event(body: &str) -> Result<Vec<CreatedObject>, NoticeError> {
    #[derive(Deserialize)]
    struct Event {
        #[serde(rename = "Records")]
        records: Vec<EventRecord>,
    }
    let event: Event = serde_json::from_str(body).map_err(NoticeError::MalformedEvent)?;
    if event.records.is_empty() {
        return Err(NoticeError::NoRecords);
    }
    event
        .records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            let EventRecord {
                event_version,
                event_source,
                event_name,
                event_time,
                s3: EventS3 { bucket, object },
            } = record;
            let bucket = bucket.name;
            let Some(key) = decode_key(&object.key) else {
                return Err(NoticeError::UndecodableKey {
                    index,
                    bucket,
                    key: object.key,
                });
            };
            let supported = event_source == "aws:s3"
                && event_version.split('.').next() == Some("2")
                && event_name.starts_with("ObjectCreated:");
            if !supported {
                return Err(NoticeError::UnsupportedEvent(Box::new(UnsupportedEvent {
                    index,
                    event_source,
                    event_name,
                    event_version,
                    bucket,
                    key,
                })));
            }
            Ok(CreatedObject {
                event_name,
                event_time,
                bucket,
                key,
                size: object.size,
                version_id: object.version_id.filter(|v| !v.is_empty() && v != "null"),
                e_tag: object.e_tag.filter(|e| !e.trim_matches('"').is_empty()),
            })
        })
        .collect()
}

/// An S3 event's key as the object's real key: `+` is a space, then `%XX` escapes are bytes of
/// UTF-8 text (a `%` not followed by two hex digits stays as it is). `None` when those bytes are
/// not UTF-8.
pub fn decode_key(encoded: &str) -> Option<String> {
    let spaced = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    use proptest::prelude::*;

    use super::*;

    /// What S3 leaves unescaped in an event's key (as `URLEncoder` does): letters, digits and
    /// `*-._`; a space becomes `+`.
    const AWS_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b' ');

    /// S3's encoding of a key in an event.
    fn aws_encoded(key: &str) -> String {
        utf8_percent_encode(key, AWS_ESCAPED)
            .to_string()
            .replace(' ', "+")
    }

    /// LocalStack's: a space is `%20`, `/` and a few others stay.
    fn localstack_encoded(key: &str) -> String {
        const LOCALSTACK_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        utf8_percent_encode(key, LOCALSTACK_ESCAPED).to_string()
    }

    fn event(records: &str) -> String {
        format!(r#"{{"Records":[{records}]}}"#)
    }

    fn record(event_name: &str, bucket: &str, key: &str) -> String {
        format!(
            r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
               "eventTime":"2026-11-25T10:11:12.345Z","eventName":"{event_name}",
               "userIdentity":{{"principalId":"AWS:X"}},"requestParameters":{{"sourceIPAddress":"127.0.0.1"}},
               "responseElements":{{"x-amz-request-id":"R"}},
               "s3":{{"s3SchemaVersion":"1.0","configurationId":"landing",
                      "bucket":{{"name":"{bucket}","ownerIdentity":{{"principalId":"A"}},"arn":"arn:aws:s3:::{bucket}"}},
                      "object":{{"key":"{key}","size":42,"eTag":"0123abcd","sequencer":"0065F0"}}}}}}"#
        )
    }

    #[test]
    fn the_s3_test_event_is_recognised_and_nothing_else_is() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T01:02:03.000Z","Bucket":"barge-raw","RequestId":"R","HostId":"H"}"#;
        assert_eq!(Notice::parse(test_event).unwrap(), Notice::S3TestEvent);
        assert!(Notice::parse(r#"{"Event":"s3:ObjectCreated:Put"}"#).is_err());
        assert!(Notice::parse("garbage").is_err());
        assert!(Notice::parse(r#"{"Event":"s3:TestEvent\u0000"}"#).is_err());
    }

    #[test]
    fn an_object_created_event_names_the_object_decoded() {
        let body = event(&record(
            "ObjectCreated:Put",
            "barge-raw",
            "landing/posts/2026+11/caf%C3%A9+%2B+d%C3%A9j%C3%A0.ndjson",
        ));
        assert_eq!(
            Notice::parse(&body).unwrap(),
            Notice::S3Objects(vec![CreatedObject {
                event_name: "ObjectCreated:Put".into(),
                event_time: "2026-11-25T10:11:12.345Z".parse().unwrap(),
                bucket: "barge-raw".into(),
                key: "landing/posts/2026 11/café + déjà.ndjson".into(),
                size: Some(42),
                version_id: None,
                e_tag: Some("0123abcd".into()),
            }])
        );
    }

    #[test]
    fn every_record_of_a_notification_is_an_object() {
        let body = event(&format!(
            "{},{}",
            record("ObjectCreated:Put", "b", "landing/a.json"),
            record(
                "ObjectCreated:CompleteMultipartUpload",
                "b",
                "landing/b.json"
            )
        ));
        let Notice::S3Objects(objects) = Notice::parse(&body).unwrap() else {
            panic!("not objects");
        };
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["landing/a.json", "landing/b.json"]);
    }

    #[test]
    fn a_versioned_object_is_named_with_its_version() {
        let body = event(&record("ObjectCreated:Copy", "b", "landing/a.json")).replace(
            r#""sequencer""#,
            r#""versionId":"3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY","sequencer""#,
        );
        let Notice::S3Objects(objects) = Notice::parse(&body).unwrap() else {
            panic!("not objects");
        };
        assert_eq!(
            objects[0].version_id.as_deref(),
            Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
        );
    }

    #[test]
    fn an_events_etag_is_kept_and_an_empty_one_is_none() {
        let objects = |body: &str| match Notice::parse(body).unwrap() {
            Notice::S3Objects(objects) => objects,
            other => panic!("not objects: {other:?}"),
        };
        let body = event(&record("ObjectCreated:Put", "b", "landing/a.json"));
        assert_eq!(objects(&body)[0].e_tag.as_deref(), Some("0123abcd"));
        let empty = body.replace(r#""eTag":"0123abcd""#, r#""eTag":"""#);
        assert_eq!(objects(&empty)[0].e_tag, None);
        let none = body.replace(r#""eTag":"0123abcd","#, "");
        assert_eq!(objects(&none)[0].e_tag, None);
    }

    #[test]
    fn only_an_empty_key_ending_in_a_slash_is_a_folder_marker() {
        let object = |key: &str, size| CreatedObject {
            event_name: "ObjectCreated:Put".into(),
            event_time: "2026-11-25T10:11:12Z".parse().unwrap(),
            bucket: "b".into(),
            key: key.into(),
            size,
            version_id: None,
            e_tag: None,
        };
        assert!(object("landing/posts/new folder/", Some(0)).is_folder_marker());
        assert!(!object("landing/posts/new folder/", Some(2)).is_folder_marker());
        assert!(!object("landing/posts/new folder/", None).is_folder_marker());
        assert!(!object("landing/posts/empty.json", Some(0)).is_folder_marker());
    }

    #[test]
    fn other_events_are_refused_with_the_reason() {
        let removed = event(&format!(
            "{},{}",
            record("ObjectCreated:Put", "b", "landing/a.json"),
            record("ObjectRemoved:Delete", "b", "landing/x+y.json")
        ));
        assert_eq!(
            Notice::parse(&removed).unwrap_err().to_string(),
            "S3 event record 1: aws:s3 event \"ObjectRemoved:Delete\" (version 2.1) for \
             s3://b/landing/x y.json: only aws:s3 ObjectCreated:* events of version 2.x announce \
             objects to load"
        );
        let version_3 = event(&record("ObjectCreated:Put", "b", "k")).replace("2.1", "3.0");
        assert!(matches!(
            Notice::parse(&version_3),
            Err(NoticeError::UnsupportedEvent(_))
        ));
        let other_service =
            event(&record("ObjectCreated:Put", "b", "k")).replace("aws:s3", "aws:sqs");
        assert!(matches!(
            Notice::parse(&other_service),
            Err(NoticeError::UnsupportedEvent(_))
        ));
        assert!(matches!(
            Notice::parse(&event("")),
            Err(NoticeError::NoRecords)
        ));
        assert!(matches!(
            Notice::parse(r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#),
            Err(NoticeError::MalformedEvent(_))
        ));
        assert!(matches!(
            Notice::parse(r#"{"Records":{}}"#),
            Err(NoticeError::MalformedEvent(_))
        ));
    }

    #[test]
    fn a_key_that_is_not_utf8_is_named() {
        let body = event(&record("ObjectCreated:Put", "b", "landing/%FF%FE.json"));
        assert_eq!(
            Notice::parse(&body).unwrap_err().to_string(),
            "S3 event record 0: key \"landing/%FF%FE.json\" of bucket b does not decode to UTF-8 \
             (keys are URL-encoded UTF-8)"
        );
    }

    #[test]
    fn keys_decode_as_aws_and_localstack_write_them() {
        assert_eq!(decode_key("a+b").unwrap(), "a b");
        assert_eq!(decode_key("a%20b").unwrap(), "a b");
        assert_eq!(decode_key("a%2Bb").unwrap(), "a+b");
        assert_eq!(decode_key("%25").unwrap(), "%");
        assert_eq!(decode_key("plain/key.json").unwrap(), "plain/key.json");
        // A stray % is not an escape: kept, as S3 would never send it unescaped.
        assert_eq!(decode_key("100%").unwrap(), "100%");
        assert_eq!(decode_key("%C3%A9").unwrap(), "é");
        assert_eq!(decode_key("%C3").as_deref(), None);
    }

    proptest! {
        /// Any key, encoded as AWS or as LocalStack encodes it, decodes to itself.
        #[test]
        fn any_key_decodes_to_itself(key in "\\PC{0,40}") {
            prop_assert_eq!(decode_key(&aws_encoded(&key)), Some(key.clone()));
            prop_assert_eq!(decode_key(&localstack_encoded(&key)), Some(key));
        }

        /// In a whole event too, with the rest of the record intact.
        #[test]
        fn any_key_survives_an_event(key in "\\PC{1,30}", size in any::<u64>()) {
            let body = event(&record("ObjectCreated:Put", "b", &aws_encoded(&key)))
                .replace("\"size\":42", &format!("\"size\":{size}"));
            let Notice::S3Objects(objects) = Notice::parse(&body).unwrap() else {
                panic!("not objects");
            };
            prop_assert_eq!(&objects[0].key, &key);
            prop_assert_eq!(objects[0].size, Some(size));
        }

        /// Bytes that are not UTF-8 never decode, however escaped.
        #[test]
        fn escaped_bytes_that_are_not_utf8_never_decode(
            bytes in proptest::collection::vec(any::<u8>(), 1..16)
        ) {
            let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let decoded = decode_key(&encoded);
            prop_assert_eq!(
                decoded.as_deref(),
                std::str::from_utf8(&bytes).ok()
            );
        }

        /// Nothing panics on any body; an event body is objects or an error.
        #[test]
        fn any_body_parses_or_is_refused(body in "\\PC{0,200}") {
            let _ = Notice::parse(&body);
        }
    }
}
