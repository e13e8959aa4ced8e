//! The LZ4 frames of `.lz4` objects: written with 64 KB independent blocks, and read back
//! only in that shape. A frame this program would never write is refused as it arrives,
//! so a store cannot make a download allocate what a frame declares (4 MB blocks cost
//! 8 MB a download) nor expand a few KB into a disk's worth of output:
//!
//! - one frame, version 1, independent blocks of at most 64 KB, no dictionary, no block
//!   checksums (a content checksum and a content size are accepted: the output's SHA-256
//!   is checked anyway, and a content size must match);
//! - nothing after the frame;
//! - at most `MAX_RATIO` times more output than frame bytes (plus one block).

use lz4_flex::frame::{BlockSize, FrameEncoder, FrameInfo};
use std::io::{self, Read, Write};

const MAGIC: u32 = 0x184D_2204;

/// The only block size written and accepted (the frame format's smallest).
const BLOCK: usize = 64 * 1024;

/// The most output per frame byte a frame may decode to. go's outputs compress at most
/// 5.5 times with these frames (2 386 outputs of `go build std cmd`, 630 MB): 64 leaves
/// room for any real output while a frame of zeros, at 245, is refused.
pub(crate) const MAX_RATIO: u64 = 64;

/// An encoder of the frames this program writes.
pub fn encoder<W: Write>(out: W) -> FrameEncoder<W> {
    FrameEncoder::with_frame_info(FrameInfo::new().block_size(BlockSize::Max64KB), out)
}

/// The most bytes a frame of `output` bytes takes: every block stored as it is, its
/// length word, the header, the end mark and a content checksum.
pub(crate) fn max_frame_len(output: u64) -> u64 {
    let blocks = output / BLOCK as u64 + 1;
    output.saturating_add(blocks * 4 + 32)
}

/// Whether `output` bytes from `frame` bytes is a ratio frames may have (what an upload
/// checks before sending the compressed form, and a download as the frame arrives).
pub(crate) fn fits_ratio(output: u64, frame: u64) -> bool {
    output <= MAX_RATIO.saturating_mul(frame).saturating_add(BLOCK as u64)
}

/// Decodes one frame of `inner`, refusing (with `InvalidData`) anything this program
/// would not have written; errors of `inner` pass through as they are.
pub(crate) struct FrameReader<R> {
    inner: R,
    /// Frame bytes read so far.
    read: u64,
    /// Output bytes produced so far.
    produced: u64,
    state: State,
    checksum: bool,
    content_size: Option<u64>,
    src: Vec<u8>,
    out: Vec<u8>,
    /// Unread output in `out`: `out[pos..end]`.
    pos: usize,
    end: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Blocks,
    Done,
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl<R: Read> FrameReader<R> {
    /// A reader of the frame `inner` holds.
    pub(crate) fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            read: 0,
            produced: 0,
            state: State::Header,
            checksum: false,
            content_size: None,
            src: Vec::new(),
            out: Vec::new(),
            pos: 0,
            end: 0,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid("the LZ4 frame ends early".into()),
            _ => e,
        })?;
        self.read += buf.len() as u64;
        Ok(())
    }

    fn header(&mut self) -> io::Result<()> {
        let mut head = [0u8; 7];
        self.fill(&mut head)?;
        if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) != MAGIC {
            return Err(invalid("not an LZ4 frame".into()));
        }
        let (flags, block) = (head[4], head[5]);
        // Version 01, independent blocks; no block checksum, reserved bit or dictionary.
        if flags & 0b1111_0011 != 0b0110_0000 {
            return Err(invalid(format!("LZ4 frame flags {flags:#04x}: not a frame this program writes")));
        }
        if block != 0x40 {
            let size = match (block >> 4) & 7 {
                5 => "256 KB",
                6 => "1 MB",
                7 => "4 MB",
                _ => "unknown",
            };
            return Err(invalid(format!("LZ4 frame of {size} blocks: this program writes 64 KB blocks")));
        }
        self.checksum = flags & 0b0000_0100 != 0;
        if flags & 0b0000_1000 != 0 {
            // The content size came before the header checksum, which `head[6]` then is.
            let mut rest = [0u8; 8];
            rest[0] = head[6];
            self.fill(&mut rest[1..])?;
            self.content_size = Some(u64::from_le_bytes(rest));
            self.fill(&mut [0u8; 1])?;
        }
        self.src.reserve_exact(BLOCK);
        self.out.resize(BLOCK, 0);
        self.state = State::Blocks;
        Ok(())
    }

    /// Decodes the next block into `out`; at the end mark, checks the end.
    fn block(&mut self) -> io::Result<()> {
        let mut word = [0u8; 4];
        self.fill(&mut word)?;
        let word = u32::from_le_bytes(word);
        if word == 0 {
            return self.finish();
        }
        let stored = word & 0x8000_0000 != 0;
        let len = (word & 0x7FFF_FFFF) as usize;
        if len > BLOCK {
            return Err(invalid(format!("an LZ4 block of {len} bytes, over the frame's 64 KB")));
        }
        self.src.resize(len, 0);
        let mut src = std::mem::take(&mut self.src);
        let filled = self.fill(&mut src);
        self.src = src;
        filled?;
        let n = if stored {
            self.out[..len].copy_from_slice(&self.src);
            len
        } else {
            lz4_flex::block::decompress_into(&self.src, &mut self.out)
                .map_err(|e| invalid(format!("an LZ4 block does not decode: {e}")))?
        };
        self.produced += n as u64;
        if !fits_ratio(self.produced, self.read) {
            return Err(invalid(format!(
                "the LZ4 frame decodes to more than {MAX_RATIO} times its size ({} bytes from {}): no output of go's \
                 compresses like that",
                self.produced, self.read
            )));
        }
        (self.pos, self.end) = (0, n);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.checksum {
            self.fill(&mut [0u8; 4])?;
        }
        if let Some(size) = self.content_size.filter(|&s| s != self.produced) {
            return Err(invalid(format!("the LZ4 frame says {size} bytes and holds {}", self.produced)));
        }
        let mut after = [0u8; 1];
        loop {
            match self.inner.read(&mut after) {
                Ok(0) => break,
                Ok(_) => return Err(invalid("bytes after the end of the LZ4 frame".into())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.state = State::Done;
        Ok(())
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.end {
                let n = buf.len().min(self.end - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.state {
                State::Header => self.header()?,
                State::Blocks => self.block()?,
                State::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(data: &[u8]) -> Vec<u8> {
        let mut e = encoder(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        FrameReader::new(frame).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Pseudo-random bytes that LZ4 cannot shrink.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_what_the_encoder_writes() {
        let text: Vec<u8> =
            (0..20_000u32).flat_map(|i| format!("func f{i}() int {{ return {i} }}\n").into_bytes()).collect();
        for data in [Vec::new(), b"go index v2".to_vec(), noise(200_000), text] {
            let frame = frame_of(&data);
            assert_eq!(decode(&frame).unwrap(), data);
            assert!(frame.len() as u64 <= max_frame_len(data.len() as u64), "{} for {}", frame.len(), data.len());
        }
    }

    #[test]
    fn an_output_that_compresses_beyond_the_ratio_is_refused_even_from_the_encoder() {
        let frame = frame_of(&b"abc".repeat(50_000));
        assert!(!fits_ratio(150_000, frame.len() as u64), "uploads send such an output plain");
        assert!(decode(&frame).is_err());
        assert!(fits_ratio(150_000, 150_000 / 5));
    }

    #[test]
    fn a_frame_of_zeros_is_refused_after_a_block_or_two() {
        // 64 KB of zeros: one literal, then one long match (267 bytes a block).
        let mut block = vec![0x1F, 0x00, 0x01, 0x00];
        let mut ext = 65536 - 1 - 5 - 4 - 15;
        while ext >= 255 {
            block.push(255);
            ext -= 255;
        }
        block.push(ext as u8);
        block.extend_from_slice(&[0x50, 0, 0, 0, 0, 0]);
        let mut frame = vec![0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];
        for _ in 0..1000 {
            frame.extend_from_slice(&(block.len() as u32).to_le_bytes());
            frame.extend_from_slice(&block);
        }
        frame.extend_from_slice(&[0; 4]);
        let mut reader = FrameReader::new(frame.as_slice());
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("more than 64 times"), "{err}");
        assert!(out.len() <= 2 * BLOCK, "{} bytes decoded before the refusal", out.len());
    }

    #[test]
    fn frames_this_program_never_writes_are_refused() {
        let good = frame_of(b"some output");
        let mut big_blocks = good.clone();
        big_blocks[5] = 0x70;
        let mut linked = good.clone();
        linked[4] = 0x40;
        let mut dictionary = good.clone();
        dictionary[4] |= 1;
        let mut trailing = good.clone();
        trailing.extend_from_slice(&good);
        let mut oversized_block = good.clone();
        oversized_block[7..11].copy_from_slice(&(0x8001_0001u32).to_le_bytes());
        for (name, frame, says) in [
            ("4 MB blocks", big_blocks, "4 MB blocks"),
            ("linked blocks", linked, "flags"),
            ("a dictionary", dictionary, "flags"),
            ("a second frame", trailing, "after the end"),
            ("a block over 64 KB", oversized_block, "over the frame's 64 KB"),
            ("cut short", good[..good.len() - 2].to_vec(), "ends early"),
            ("not a frame", b"plain bytes, not lz4".to_vec(), "not an LZ4 frame"),
        ] {
            let err = decode(&frame).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}");
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
    }

    #[test]
    fn a_content_size_must_match() {
        let mut info = FrameInfo::new().block_size(BlockSize::Max64KB);
        info.content_size = Some(5);
        let mut e = FrameEncoder::with_frame_info(info.clone(), Vec::new());
        e.write_all(b"12345").unwrap();
        assert_eq!(decode(&e.finish().unwrap()).unwrap(), b"12345");
        let mut frame = FrameEncoder::with_frame_info(info, Vec::new());
        frame.write_all(b"12345").unwrap();
        let mut frame = frame.finish().unwrap();
        frame[6] = 6;
        let err = decode(&frame).unwrap_err();
        assert!(err.to_string().contains("says 6 bytes and holds 5"), "{err}");
    }
}
