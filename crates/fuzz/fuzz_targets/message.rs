//! Any SQS message body: parsed into a notice or refused with an error, never a panic; a parsed
//! batch message survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transformer::notice::Notice;

fuzz_target!(|body: &str| {
    if let Ok(Notice::Batch(message)) = Notice::parse(body) {
        let again = barge_core::BatchMessage::parse(&message.to_json()).expect("re-parses");
        assert_eq!(again, message);
    }
});
