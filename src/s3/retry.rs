//! When a failed request is tried again: the AWS SDKs' "standard" transient set (5xx,
//! throttling, broken connections), at most `ATTEMPTS` attempts, jittered exponential
//! backoff, and never past the caller's deadline (a timeout is never retried: a second
//! full wait would double what the build waits). Used by the one send (`request`) only.

use super::error::S3Error;
use crate::random::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts per request for transient failures.
pub(crate) const ATTEMPTS: u32 = 3;

/// The client-wide retry budget (the SDKs' standard mode): a retry costs
/// `RETRY_COST` tokens, given back if the request then succeeds; a success at the first
/// attempt adds `REFUND`. So a store that keeps failing is not hammered with retries,
/// while one that fails now and then is retried without end.
pub(crate) const BUDGET: u32 = 500;
pub(crate) const RETRY_COST: u32 = 5;
pub(crate) const REFUND: u32 = 1;

/// Jittered exponential backoff before retry `n` (1-based): uniform in
/// [0, min(100 ms · 2^(n-1), 2 s)].
pub(crate) fn backoff(retry: u32, rng: &mut Rng) -> Duration {
    let cap = Duration::from_millis(100u64 << retry.saturating_sub(1).min(5)).min(Duration::from_secs(2));
    cap.mul_f64(rng.next_f64())
}

/// Retry state shared by every request of a client: the budget, the jitter's generator
/// and the counters. The waiting between attempts is injected (tests do not sleep).
pub(crate) struct Retrier {
    tokens: Mutex<u32>,
    rng: Mutex<Rng>,
    retries: AtomicU64,
    exhausted: AtomicU64,
    sleep: fn(Duration),
}

impl Default for Retrier {
    fn default() -> Self {
        Retrier::with_sleep(std::thread::sleep)
    }
}

impl Retrier {
    /// A full budget; `sleep` waits between attempts.
    pub(crate) fn with_sleep(sleep: fn(Duration)) -> Retrier {
        Retrier::with_parts(sleep, Rng::fresh())
    }

    /// [`Retrier::with_sleep`] with the jitter drawn from `rng` (tests).
    pub(crate) fn with_parts(sleep: fn(Duration), rng: Rng) -> Retrier {
        Retrier {
            tokens: Mutex::new(BUDGET),
            rng: Mutex::new(rng),
            retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            sleep,
        }
    }

    /// Retries made so far.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Retries not made because the budget was spent.
    pub(crate) fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if *tokens < RETRY_COST {
            return false;
        }
        *tokens -= RETRY_COST;
        true
    }

    fn give_back(&self, n: u32) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        *tokens = (*tokens + n).min(BUDGET);
    }

    /// Runs `op` until it succeeds, fails for good, runs out of attempts or budget, or the
    /// next attempt could not start before `deadline`; `keep_going` is asked before each
    /// retry (the breaker may have switched the bucket off meanwhile). An answer that
    /// taught the client the store's clock (see `Client`) is re-signed and tried once more
    /// at once, outside the count.
    pub(crate) fn run<T>(
        &self,
        deadline: Option<Instant>,
        keep_going: &dyn Fn() -> bool,
        mut op: impl FnMut() -> Result<T, S3Error>,
    ) -> Result<T, S3Error> {
        let mut attempt = 0;
        let mut resigned = false;
        let mut taken = 0;
        loop {
            attempt += 1;
            let error = match op() {
                Ok(v) => {
                    self.give_back(if attempt == 1 { REFUND } else { taken });
                    return Ok(v);
                }
                Err(e) => e,
            };
            if error.is_resignable() && !resigned {
                resigned = true;
                attempt -= 1;
                log!(2, "{error}; signing again");
                continue;
            }
            if !error.is_transient() || attempt >= ATTEMPTS || !keep_going() {
                return Err(error);
            }
            let pause = backoff(attempt, &mut self.rng.lock().unwrap_or_else(|p| p.into_inner()));
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                return Err(error);
            }
            if !self.take() {
                self.exhausted.fetch_add(1, Ordering::Relaxed);
                // (what this request took is kept: it failed)
                log!(2, "{error}; not retried: the retry budget is spent (the store keeps failing)");
                return Err(error);
            }
            taken += RETRY_COST;
            self.retries.fetch_add(1, Ordering::Relaxed);
            log!(3, "{error}; retrying");
            (self.sleep)(pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::xml::ErrorDoc;
    use std::cell::Cell;

    fn slow_down() -> S3Error {
        S3Error::Status {
            op: "GET k".into(),
            status: 503,
            doc: Box::new(ErrorDoc { code: Some("SlowDown".into()), ..Default::default() }),
        }
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let mut rng = Rng::seeded(1);
        for retry in 1..20 {
            assert!(backoff(retry, &mut rng) <= Duration::from_secs(2));
        }
        assert!(backoff(1, &mut rng) <= Duration::from_millis(100));
        let draws: Vec<Duration> = (0..10).map(|_| backoff(3, &mut rng)).collect();
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
    }

    #[test]
    fn transient_failures_are_retried_up_to_the_attempts() {
        let retrier = Retrier::with_sleep(|_| {});
        let calls = Cell::new(0);
        let result: Result<(), S3Error> = retrier.run(None, &|| true, || {
            calls.set(calls.get() + 1);
            Err(slow_down())
        });
        assert!(result.is_err());
        assert_eq!(calls.get(), ATTEMPTS);

        let calls = Cell::new(0);
        let result = retrier.run(None, &|| true, || {
            calls.set(calls.get() + 1);
            if calls.get() < 2 {
                Err(slow_down())
            } else {
                Ok(7)
            }
        });
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.get(), 2);
        assert_eq!(retrier.retries(), ATTEMPTS as u64 - 1 + 1);
    }

    #[test]
    fn the_budget_stops_retries_to_a_failing_store_and_successes_refill_it() {
        let retrier = Retrier::with_parts(|_| {}, Rng::seeded(4));
        let mut calls = 0;
        for _ in 0..200 {
            let _ = retrier.run::<()>(None, &|| true, || {
                calls += 1;
                Err(slow_down())
            });
        }
        // 500 tokens at 5 per retry: 100 retries, then single attempts.
        assert_eq!(retrier.retries(), u64::from(BUDGET / RETRY_COST));
        assert_eq!(calls, 200 + BUDGET / RETRY_COST);
        assert!(retrier.exhausted() > 0);
        for _ in 0..10 {
            retrier.run(None, &|| true, || Ok(())).unwrap();
        }
        assert_eq!(*retrier.tokens.lock().unwrap(), 10 * REFUND);
        // A retry that succeeds gives its cost back.
        let mut first = true;
        retrier.run(None, &|| true, || if std::mem::take(&mut first) { Err(slow_down()) } else { Ok(()) }).unwrap();
        assert_eq!(*retrier.tokens.lock().unwrap(), 10 * REFUND);
    }

    #[test]
    fn a_store_failing_a_third_of_the_time_never_empties_the_budget() {
        let retrier = Retrier::with_parts(|_| {}, Rng::seeded(6));
        let mut draws = Rng::seeded(7);
        for _ in 0..10_000 {
            let _ = retrier.run(None, &|| true, || if draws.next_f64() < 0.3 { Err(slow_down()) } else { Ok(()) });
        }
        assert_eq!(retrier.exhausted(), 0);
    }

    #[test]
    fn a_clock_skew_answer_is_signed_again_once() {
        let retrier = Retrier::with_sleep(|_| panic!("no backoff for a re-signed request"));
        let skewed = || S3Error::Status {
            op: "GET k".into(),
            status: 403,
            doc: Box::new(ErrorDoc { code: Some("RequestTimeTooSkewed".into()), resign: true, ..Default::default() }),
        };
        let calls = Cell::new(0);
        let result = retrier.run(None, &|| true, || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err(skewed())
            } else {
                Ok(1)
            }
        });
        assert_eq!(result.unwrap(), 1);
        let calls = Cell::new(0);
        let result: Result<(), S3Error> = retrier.run(None, &|| true, || {
            calls.set(calls.get() + 1);
            Err(skewed())
        });
        assert!(result.is_err());
        assert_eq!(calls.get(), 2, "one re-signed attempt, then the error");
    }

    #[test]
    fn no_retry_for_timeouts_refusals_a_closed_breaker_or_a_spent_deadline() {
        let timeout = || S3Error::Transport { op: "GET k".into(), timeout: true, message: "t".into() };
        let denied = || S3Error::Status {
            op: "GET k".into(),
            status: 403,
            doc: Box::new(ErrorDoc { code: Some("AccessDenied".into()), ..Default::default() }),
        };
        for (error, keep_going, deadline) in [
            (timeout as fn() -> S3Error, true, None),
            (denied, true, None),
            (slow_down, false, None),
            (slow_down, true, Some(Instant::now())),
        ] {
            let calls = Cell::new(0);
            let _ = Retrier::with_sleep(|_| {}).run::<()>(deadline, &|| keep_going, || {
                calls.set(calls.get() + 1);
                Err(error())
            });
            assert_eq!(calls.get(), 1);
        }
    }
}
