//! Fuzz target: `Frame::decode` and `NodeFrame::decode` on arbitrary bytes
//! must never panic, and a frame that decodes must re-encode to exactly the
//! same bytes (the wire encoding is canonical).

#![no_main]

use concord_sync::wire::{Frame, NodeFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let again = frame.encode().expect("a decoded frame re-encodes");
        assert_eq!(again, data, "decode then encode is the identity");
        assert_eq!(frame.encoded_len(), data.len());
    }
    if let Ok(frame) = NodeFrame::decode(data) {
        let again = frame.encode().expect("a decoded frame re-encodes");
        assert_eq!(again, data, "decode then encode is the identity");
        assert_eq!(frame.encoded_len(), data.len());
    }
});
