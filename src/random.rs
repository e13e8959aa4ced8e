//! Non-cryptographic randomness for names and retry jitter: a xorshift generator seeded
//! from the clock, the process ID and a per-call counter (no dependency, no `unsafe`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A small, fast pseudo-random generator (xorshift64*). Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed (tests).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A generator seeded differently on every call, in every process.
    pub(crate) fn fresh() -> Rng {
        Rng::seeded(nonce())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A value that differs between calls and between processes started at the same moment
/// with the same PID (containers).
pub(crate) fn nonce() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    let local = 0u8;
    let address = &local as *const u8 as u64; // stack address: differs with ASLR
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ address.rotate_left(17)
        ^ calls.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser: spreads the inputs over all bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_and_floats_stay_in_range() {
        assert_ne!(nonce(), nonce());
        let mut r = Rng::seeded(7);
        for _ in 0..1000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert_eq!(Rng::seeded(7).next_u64(), Rng::seeded(7).next_u64());
    }
}
