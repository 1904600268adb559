//! A counting semaphore: an effect's `concurrency` limit across the worker threads.

use parking_lot::{Condvar, Mutex};

#[derive(Debug)]
pub struct Limit {
    free: Mutex<usize>,
    freed: Condvar,
}

/// Holds one slot until dropped.
pub struct Slot<'a>(&'a Limit);

impl Limit {
    pub fn new(slots: usize) -> Limit {
        Limit {
            free: Mutex::new(slots.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn never_more_than_the_limit_at_once() {
        let limit = Arc::new(Limit::new(2));
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (limit, now, peak) = (limit.clone(), now.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _slot = limit.acquire();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
