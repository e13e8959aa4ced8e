//! The macOS binaries (x86_64-apple-darwin, aarch64-apple-darwin, built by
//! scripts/build-cross.sh with zig as the linker). Nothing here runs Mach-O binaries (no
//! macOS, no emulator for it), so they are identified from their headers: a 64-bit
//! Mach-O executable for the right CPU that loads only system libraries (/usr/lib), and on
//! arm64 carries the code signature (ad hoc) without which Apple silicon refuses to run it.

use crate::common;

use common::cross::cross_binary;
use std::fs;

const MH_MAGIC_64: u32 = 0xfeed_facf;
const MH_EXECUTE: u32 = 2;
const LC_LOAD_DYLIB: u32 = 0xc;
const LC_CODE_SIGNATURE: u32 = 0x1d;

#[test]
fn the_macos_binaries_are_mach_o_executables_for_their_cpu() {
    for (target, cputype) in [("x86_64-apple-darwin", 0x0100_0007u32), ("aarch64-apple-darwin", 0x0100_000c)] {
        let bin = cross_binary(target);
        let bytes = fs::read(&bin).unwrap();
        assert!(bytes.len() > 100_000, "{target}: {} bytes", bytes.len());
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), MH_MAGIC_64, "{target}: not a 64-bit Mach-O file");
        assert_eq!(word(4), cputype, "{target}: CPU type {:#x}", word(4));
        assert_eq!(word(12), MH_EXECUTE, "{target}: not an executable");
        // The load commands follow the 32-byte header: every library it loads.
        let (count, mut at) = (word(16) as usize, 32);
        let (mut dylibs, mut signed) = (Vec::new(), false);
        for _ in 0..count {
            let (cmd, size) = (word(at), word(at + 4) as usize);
            assert!(size >= 8 && at + size <= bytes.len(), "{target}: load command at {at} of size {size}");
            if cmd == LC_LOAD_DYLIB {
                let name = &bytes[at + word(at + 8) as usize..at + size];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                dylibs.push(String::from_utf8_lossy(&name[..end]).into_owned());
            }
            signed |= cmd == LC_CODE_SIGNATURE;
            at += size;
        }
        assert!(dylibs.iter().any(|d| d.starts_with("/usr/lib/libSystem")), "{target}: {dylibs:?}");
        assert!(dylibs.iter().all(|d| d.starts_with("/usr/lib/")), "{target} loads a non-system library: {dylibs:?}");
        if target.starts_with("aarch64") {
            assert!(signed, "{target}: no code signature (LC_CODE_SIGNATURE)");
        }
        eprintln!("{target}: {} bytes, loads {dylibs:?}", bytes.len());
    }
}
