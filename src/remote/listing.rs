//! Misses without a round trip. At the start of a building session the prefix is listed
//! (16 lanes in parallel, one per first hex digit of the action IDs; each lane lists the
//! own prefix, then every `--read-prefix` in order) into an index of the actions the
//! bucket has, per scope. A lane lists `<prefix>/<digit>` and takes only keys that are
//! `<prefix>/<64 hex digits>[.lz4]`, so a scope never sees another one's outputs, not even
//! those of a prefix that merely starts like it (`go-cache` and `go-cache-pr/1`). Once the listing is complete, a get for an action the
//! index does not hold is answered as a miss at once, instead of after a GET's round trip.
//!
//! The index is a snapshot: an object another machine uploads after it was taken is
//! missed (go compiles it, which costs time, never correctness). Such misses are counted:
//! the output of a fast-missed action is uploaded create-only, and a store that has it
//! already refuses (412, where it honours `If-None-Match`). A bucket with more than
//! `--fast-miss-max-keys` objects, a listing that fails (no `s3:ListBucket` permission,
//! say) or one not finished yet: no fast misses, every lookup asks the bucket.
//!
//! The index also knows which outputs of the own scope are due for a refresh (dated longer ago than
//! `--refresh-after`), so that local hits date them anew too (see `refresh`). Local hits
//! that come before the listing is complete are kept and handed over when it is.

use super::layout::{Form, Layout, Place};
use super::refresh::{self, Refresher};
use super::Handles;
use crate::id::Id;
use crate::s3::client::Bounds;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Keys per listing page (the S3 maximum).
const PAGE: u32 = 1000;

/// The actions the bucket has, per scope (own first) and form, and those of the own scope
/// due for a refresh: sorted first 8 bytes of their IDs.
#[derive(Debug, Default)]
struct Index {
    scopes: Vec<Forms>,
    due: Vec<u64>,
}

/// The actions one scope has, per form.
#[derive(Debug, Default)]
struct Forms {
    plain: Vec<u64>,
    lz4: Vec<u64>,
}

impl Forms {
    fn form(&self, key: u64) -> Option<Form> {
        if self.lz4.binary_search(&key).is_ok() {
            Some(Form::Lz4)
        } else if self.plain.binary_search(&key).is_ok() {
            Some(Form::Plain)
        } else {
            None
        }
    }
}

impl Index {
    /// The first scope that has `action`, in the compressed form when it has both.
    fn place(&self, action: &Id) -> Option<Place> {
        let key = short(action);
        self.scopes.iter().enumerate().find_map(|(scope, forms)| forms.form(key).map(|form| Place { scope, form }))
    }
}

/// What the bucket has, as far as the listing knows.
pub(crate) struct Listing {
    /// Set once: the index of the bucket's outputs, or `None` when the listing could not
    /// be completed.
    index: OnceLock<Option<Index>>,
    /// Actions answered as fast misses this session.
    missed: Mutex<HashSet<Id>>,
    /// Local hits seen before the listing was complete (`None` once it is).
    early_hits: Mutex<Option<Vec<Id>>>,
}

impl Default for Listing {
    fn default() -> Self {
        Listing { index: OnceLock::new(), missed: Mutex::default(), early_hits: Mutex::new(Some(Vec::new())) }
    }
}

fn short(action: &Id) -> u64 {
    u64::from_be_bytes(action.0[..8].try_into().unwrap_or_default())
}

impl Listing {
    /// True when the listing is complete and says the bucket lacks `action`; the action is
    /// then remembered as fast-missed.
    pub(crate) fn fast_miss(&self, action: &Id) -> bool {
        let Some(Some(index)) = self.index.get() else { return false };
        if index.place(action).is_some() {
            return false;
        }
        super::lock(&self.missed).insert(*action);
        true
    }

    /// Whether `action` was answered as a fast miss (its upload then checks first).
    pub(crate) fn was_fast_missed(&self, action: &Id) -> bool {
        super::lock(&self.missed).contains(action)
    }

    /// In which scope (the first) and form (the compressed one when it had both) the
    /// bucket had `action` when it was listed: `None` when there is no complete listing,
    /// `Some(None)` when no scope had it.
    pub(crate) fn place(&self, action: &Id) -> Option<Option<Place>> {
        let index = self.index.get()?.as_ref()?;
        Some(index.place(action))
    }

    /// Whether the listing is complete and says the bucket's `action` is due for a
    /// refresh; before that, `action` is kept and handed back by [`Listing::set`].
    pub(crate) fn local_hit_due(&self, action: &Id) -> bool {
        let mut early = super::lock(&self.early_hits);
        if let Some(hits) = early.as_mut() {
            hits.push(*action);
            return false;
        }
        drop(early);
        self.is_due(action)
    }

    fn is_due(&self, action: &Id) -> bool {
        let Some(Some(index)) = self.index.get() else { return false };
        index.due.binary_search(&short(action)).is_ok()
    }

    /// There is no listing this session (none wanted, or it could not start).
    pub(crate) fn skip(&self) {
        self.set(None);
    }

    /// Publishes the index; returns the local hits seen before it that it says are due.
    fn set(&self, index: Option<Index>) -> Vec<Id> {
        let mut early = super::lock(&self.early_hits);
        let _ = self.index.set(index);
        let hits = early.take().unwrap_or_default();
        drop(early);
        hits.into_iter().filter(|a| self.is_due(a)).collect()
    }
}

/// Lists the prefix on a thread of its own and publishes the index; the local hits seen
/// before it that it finds due go to `refresher`. Without a thread, no fast misses.
pub(super) fn start(
    listing: &Arc<Listing>,
    handles: &Handles,
    refresher: Option<Arc<Refresher>>,
    max_keys: usize,
    page_timeout: Duration,
) {
    let (listing, handles) = (Arc::clone(listing), handles.clone());
    let spawned = thread::Builder::new().name("listing".into()).spawn({
        let listing = Arc::clone(&listing);
        move || {
            let refresh_after = refresher.as_ref().map(|r| r.after());
            let due = run(&listing, &handles, max_keys, page_timeout, refresh_after);
            if let Some(refresher) = &refresher {
                for action in due {
                    refresher.queue_listed(action);
                }
            }
        }
    });
    if let Err(e) = spawned {
        log!(0, "cannot start the bucket listing: {e}; continuing without fast misses");
        listing.skip();
    }
}

/// Lists every scope (one thread per lane) and publishes the index; returns the local
/// hits seen before it that it says are due for a refresh.
fn run(
    listing: &Listing,
    handles: &Handles,
    max_keys: usize,
    page_timeout: Duration,
    refresh_after: Option<Duration>,
) -> Vec<Id> {
    let started = Instant::now();
    let per_lane = max_keys.div_ceil(16);
    let lanes: Vec<Result<Vec<Vec<Listed>>, String>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..16u8)
            .map(|digit| {
                let lane = format!("{:x}", digit);
                thread::Builder::new().name(format!("list-{lane}")).spawn_scoped(scope, move || {
                    // Scope by scope, in order; only the own one's dates matter (refreshes).
                    let mut after = refresh_after;
                    let mut scopes = Vec::with_capacity(handles.scopes.len());
                    for layout in handles.scopes.iter() {
                        scopes.push(list_lane(handles, layout, &lane, per_lane, page_timeout, after.take())?);
                    }
                    Ok(scopes)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| match h {
                Ok(handle) => handle.join().unwrap_or_else(|_| Err("listing thread failed".into())),
                Err(e) => Err(format!("cannot start a listing thread: {e}")),
            })
            .collect()
    });
    let mut index = Index { scopes: handles.scopes.iter().map(|_| Forms::default()).collect(), due: Vec::new() };
    for lane in lanes {
        match lane {
            Ok(scopes) => {
                for (forms, keys) in index.scopes.iter_mut().zip(scopes) {
                    for listed in keys {
                        match listed.form {
                            Form::Plain => forms.plain.push(listed.short),
                            Form::Lz4 => forms.lz4.push(listed.short),
                        }
                        if listed.due {
                            index.due.push(listed.short);
                        }
                    }
                }
            }
            Err(why) => {
                log!(1, "no fast misses this session: {why}");
                return listing.set(None);
            }
        }
    }
    for forms in &mut index.scopes {
        forms.plain.sort_unstable();
        forms.lz4.sort_unstable();
    }
    index.due.sort_unstable();
    let counts: Vec<String> = index
        .scopes
        .iter()
        .zip(handles.scopes.iter())
        .map(|(forms, layout)| {
            format!(
                "{} plain and {} compressed outputs under {:?}",
                forms.plain.len(),
                forms.lz4.len(),
                layout.under("")
            )
        })
        .collect();
    log!(
        2,
        "fast misses on: the bucket holds {}, {} due for a refresh (listed in {:?})",
        counts.join(", "),
        index.due.len(),
        started.elapsed()
    );
    listing.set(Some(index))
}

/// One output of the listing.
struct Listed {
    short: u64,
    form: Form,
    /// Dated longer ago than `--refresh-after`.
    due: bool,
}

/// One lane of one scope: every output key under `<prefix>/<digit>`, at most `limit`;
/// dated against `refresh_after` (`None`: not a scope this session refreshes).
fn list_lane(
    handles: &Handles,
    layout: &Layout,
    digit: &str,
    limit: usize,
    page_timeout: Duration,
    refresh_after: Option<Duration>,
) -> Result<Vec<Listed>, String> {
    let client = &handles.client;
    let prefix = layout.under(digit);
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects(&prefix, token.as_deref(), Some(PAGE), Bounds::within(page_timeout))
            .map_err(|e| e.to_string())?;
        let now = client.now();
        found.extend(page.objects.iter().filter_map(|o| {
            let (action, form) = layout.parse_key(&o.key)?;
            let due = refresh::is_due(o.dated(), refresh_after, now);
            Some(Listed { short: short(&action), form, due })
        }));
        if found.len() > limit {
            return Err(format!(
                "the bucket holds more than --fast-miss-max-keys {} outputs under {:?}",
                limit * 16,
                layout.under("")
            ));
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(plain: &[&Id], lz4: &[&Id]) -> Forms {
        let sorted = |ids: &[&Id]| {
            let mut v: Vec<u64> = ids.iter().map(|a| short(a)).collect();
            v.sort_unstable();
            v
        };
        Forms { plain: sorted(plain), lz4: sorted(lz4) }
    }

    #[test]
    fn misses_only_from_a_complete_listing_of_every_scope() {
        let listing = Listing::default();
        let (a, b, c, d, e) = (Id([1; 32]), Id([2; 32]), Id([3; 32]), Id([4; 32]), Id([5; 32]));
        assert!(!listing.fast_miss(&a), "no listing yet: ask the bucket");
        assert_eq!(listing.place(&a), None);
        let own = forms(&[&a, &c, &e], &[&c]);
        let read = forms(&[], &[&d, &e]);
        listing.set(Some(Index { scopes: vec![own, read], due: vec![] }));
        assert!(!listing.fast_miss(&a));
        assert!(!listing.fast_miss(&d), "in a read scope only: not a miss");
        assert!(listing.fast_miss(&b));
        assert!(listing.was_fast_missed(&b) && !listing.was_fast_missed(&a));
        let place = |scope, form| Some(Some(Place { scope, form }));
        assert_eq!(listing.place(&a), place(0, Form::Plain));
        assert_eq!(listing.place(&b), Some(None));
        assert_eq!(listing.place(&c), place(0, Form::Lz4), "compressed first");
        assert_eq!(listing.place(&d), place(1, Form::Lz4));
        assert_eq!(listing.place(&e), place(0, Form::Plain), "the own scope first, whatever the form");
        let failed = Listing::default();
        failed.set(None);
        assert!(!failed.fast_miss(&b));
    }

    #[test]
    fn local_hits_before_the_listing_are_handed_over_when_due() {
        let listing = Listing::default();
        let (a, b, c) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        assert!(!listing.local_hit_due(&a), "no listing yet: kept for later");
        assert!(!listing.local_hit_due(&b));
        let index = Index { scopes: vec![forms(&[&a, &b, &c], &[])], due: vec![short(&a), short(&c)] };
        assert_eq!(listing.set(Some(index)), vec![a], "the early hits that are due");
        assert!(listing.local_hit_due(&c) && !listing.local_hit_due(&b));
        let failed = Listing::default();
        assert!(!failed.local_hit_due(&a));
        assert_eq!(failed.set(None), vec![], "no listing: nothing is known due");
        assert!(!failed.local_hit_due(&a));
    }
}
