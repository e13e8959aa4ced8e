//! Worker threads fed by one queue with two priorities: what go is waiting for first,
//! background work (prefetch) after it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;

/// How urgent a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// go is waiting for it.
    Urgent,
    /// Nobody waits yet (prefetch).
    Background,
}

/// A blocking job queue with two priorities.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Where workers that take only urgent jobs wait.
    urgent_ready: Condvar,
    /// Where workers that take background jobs too wait.
    any_ready: Condvar,
}

#[derive(Debug)]
struct State<T> {
    urgent: VecDeque<T>,
    background: VecDeque<T>,
    closed: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State { urgent: VecDeque::new(), background: VecDeque::new(), closed: false }),
            urgent_ready: Condvar::new(),
            any_ready: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a job; false when the queue is closed.
    pub(crate) fn push(&self, priority: Priority, job: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        match priority {
            Priority::Urgent => state.urgent.push_back(job),
            Priority::Background => state.background.push_back(job),
        }
        drop(state);
        // One waiter of each kind for an urgent job (whoever is first takes it, the other
        // sleeps again), one that takes background work for a background job: waking every
        // worker for every job cost seconds of system time with 64 of them.
        if priority == Priority::Urgent {
            self.urgent_ready.notify_one();
        }
        self.any_ready.notify_one();
        true
    }

    /// Queues many background jobs at once; false when the queue is closed.
    pub(crate) fn push_background(&self, jobs: impl IntoIterator<Item = T>) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.background.extend(jobs);
        drop(state);
        self.any_ready.notify_all();
        true
    }

    /// The next job, urgent ones first; background ones only if `background` is set.
    /// Blocks until there is one; `None` once the queue is closed.
    pub(crate) fn pop(&self, background: bool) -> Option<T> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(job) = state.urgent.pop_front() {
                return Some(job);
            }
            if background {
                if let Some(job) = state.background.pop_front() {
                    return Some(job);
                }
            }
            let ready = if background { &self.any_ready } else { &self.urgent_ready };
            state = ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Jobs waiting, urgent and background.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.urgent.len(), state.background.len())
    }

    /// Whether nothing is waiting.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Stops the workers; queued jobs are dropped.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.urgent.clear();
        state.background.clear();
        drop(state);
        self.urgent_ready.notify_all();
        self.any_ready.notify_all();
    }
}

/// Starts `count` threads named `<name>-<n>` running `work`; a thread that cannot be
/// started is reported and the pool goes on with fewer.
pub(crate) fn spawn<F>(name: &str, count: usize, work: F)
where
    F: Fn() + Send + Sync + Clone + 'static,
{
    for n in 0..count {
        let work = work.clone();
        if let Err(e) = thread::Builder::new().name(format!("{name}-{n}")).spawn(work) {
            log!(0, "cannot start {name} worker {n}: {e}; continuing with fewer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn urgent_first_background_only_for_those_who_take_it() {
        let q = Queue::default();
        q.push(Priority::Background, 1);
        q.push(Priority::Urgent, 2);
        q.push(Priority::Background, 3);
        assert_eq!(q.pop(true), Some(2));
        assert_eq!(q.pop(true), Some(1));
        assert_eq!(q.len(), (0, 1));
        // A worker that takes only urgent jobs waits for one, then is released by close.
        let q = Arc::new(q);
        let q2 = Arc::clone(&q);
        let waiter = thread::spawn(move || q2.pop(false));
        thread::sleep(Duration::from_millis(50));
        q.push(Priority::Urgent, 4);
        assert_eq!(waiter.join().unwrap(), Some(4));
        let q3 = Arc::clone(&q);
        let waiter = thread::spawn(move || q3.pop(false));
        thread::sleep(Duration::from_millis(50));
        q.close();
        assert_eq!(waiter.join().unwrap(), None);
        assert!(!q.push(Priority::Urgent, 5));
        assert!(q.is_empty());
    }

    #[test]
    fn every_job_reaches_a_worker_that_takes_it() {
        // 4 urgent-only and 4 general workers; 200 background and 200 urgent jobs pushed
        // one by one and in a batch: every one is taken, none is left asleep in the queue.
        let q: Arc<Queue<u32>> = Arc::new(Queue::default());
        let taken = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let workers: Vec<_> = (0..8)
            .map(|n| {
                let (q, taken) = (Arc::clone(&q), Arc::clone(&taken));
                thread::spawn(move || {
                    while q.pop(n % 2 == 0).is_some() {
                        taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for i in 0..200 {
            q.push(if i % 2 == 0 { Priority::Urgent } else { Priority::Background }, i);
        }
        q.push_background(200..400);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while taken.load(std::sync::atomic::Ordering::Relaxed) < 400 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(taken.load(std::sync::atomic::Ordering::Relaxed), 400);
        q.close();
        for w in workers {
            w.join().unwrap();
        }
    }
}
