//! The bodies of the bomb faults: LZ4 frames a store should never send
//! ([`Lz4Bomb`](crate::Fault::Lz4Bomb)) and an XML error that expands to a billion "lol"s
//! ([`XmlBomb`](crate::Fault::XmlBomb)).

use std::sync::{Arc, OnceLock};

use crate::fault::Bomb;
use crate::upstream::test_body;

/// The body of a [`Lz4Bomb`](crate::Fault::Lz4Bomb), made once.
pub(crate) fn bomb_frame(bomb: Bomb) -> Arc<Vec<u8>> {
    static FRAMES: [OnceLock<Arc<Vec<u8>>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (slot, blocks, descriptor): (usize, usize, [u8; 3]) = match bomb {
        // FLG 0x60 (version 1, independent blocks), BD (block size), and the header
        // checksum: the second byte of xxh32 of FLG and BD.
        Bomb::Zeros => (0, 1024, [0x60, 0x40, 0x82]),
        Bomb::BigBlocks => (1, 1, [0x60, 0x70, 0x73]),
        Bomb::Flood => (2, 128, [0x60, 0x40, 0x82]),
    };
    Arc::clone(FRAMES[slot].get_or_init(|| {
        let mut frame = vec![0x04, 0x22, 0x4D, 0x18];
        frame.extend_from_slice(&descriptor);
        let block = if bomb == Bomb::Zeros {
            // One literal zero, then a match of the rest at offset 1, then 5 literals.
            let mut block = vec![0x1F, 0x00, 0x01, 0x00];
            let mut extra = 65_536 - 1 - 5 - 4 - 15;
            while extra >= 255 {
                block.push(255);
                extra -= 255;
            }
            block.extend_from_slice(&[extra as u8, 0x50, 0, 0, 0, 0, 0]);
            block
        } else {
            test_body(65_536)
        };
        let word = if bomb == Bomb::Zeros { block.len() as u32 } else { 0x8000_0000 | block.len() as u32 };
        for _ in 0..blocks {
            frame.extend_from_slice(&word.to_le_bytes());
            frame.extend_from_slice(&block);
        }
        frame.extend_from_slice(&[0; 4]);
        Arc::new(frame)
    }))
}

/// An S3-style XML error whose DTD expands to 10^9 "lol"s (billion laughs).
pub(crate) fn xml_bomb() -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE Error [\n  <!ENTITY lol0 \"lol\">\n");
    for i in 1..10 {
        let refs = format!("&lol{};", i - 1).repeat(10);
        s.push_str(&format!("  <!ENTITY lol{i} \"{refs}\">\n"));
    }
    s.push_str("]>\n<Error><Code>&lol9;</Code><Message>&lol9;</Message></Error>");
    s
}
