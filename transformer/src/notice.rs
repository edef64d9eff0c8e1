//! What a message on the batch queue announces: a batch the importer archived, or the test event
//! S3 sends once when a bucket notification is configured (acknowledged and ignored).

use barge_core::BatchMessage;
use barge_core::message::MessageError;
use serde::Deserialize;

/// A parsed message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An archived batch to load.
    Batch(BatchMessage),
    /// S3's `s3:TestEvent`: nothing to load.
    S3TestEvent,
}

impl Notice {
    /// Parses a body; anything that is neither a batch message this build reads nor an S3 test
    /// event is an error saying why.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct S3Event<'a> {
            #[serde(rename = "Event", borrow)]
            event: Option<&'a str>,
        }
        let is_test_event = serde_json::from_str::<S3Event<'_>>(body)
            .is_ok_and(|parsed| parsed.event == Some("s3:TestEvent"));
        if is_test_event {
            return Ok(Self::S3TestEvent);
        }
        BatchMessage::parse(body).map(Self::Batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_test_event_is_recognised_and_nothing_else_is() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T01:02:03.000Z","Bucket":"barge-raw","RequestId":"R","HostId":"H"}"#;
        assert_eq!(Notice::parse(test_event).unwrap(), Notice::S3TestEvent);
        assert!(Notice::parse(r#"{"Event":"s3:ObjectCreated:Put"}"#).is_err());
        assert!(Notice::parse("garbage").is_err());
        assert!(Notice::parse(r#"{"Event":"s3:TestEvent\u0000"}"#).is_err());
    }
}
