//! Per-thread batches of lines: a worker formats each line straight into its
//! own batch, and the writer thread takes the whole batch at once (a swap
//! under the batch's lock). A line costs no allocation, no copy and no
//! channel operation; the lock is the worker's own, contended only for the
//! moment of a swap.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::line::Clock;

/// The lines a worker formatted that the writer has not taken yet.
#[derive(Default)]
pub(super) struct Batch {
    /// The date of the last line: formatted once a second per thread.
    pub(super) clock: Clock,
    pub(super) text: String,
    pub(super) lines: usize,
}

impl Batch {
    /// Formats one line at the end of the batch, unless the batch holds
    /// `max_lines` already. `false`: the line was dropped.
    pub(super) fn push(
        &mut self,
        max_lines: usize,
        format: impl FnOnce(&mut Clock, &mut String) -> bool,
    ) -> bool {
        if self.lines >= max_lines {
            return false;
        }
        let start = self.text.len();
        if format(&mut self.clock, &mut self.text) {
            self.text.push('\n');
            self.lines += 1;
        } else {
            self.text.truncate(start);
        }
        true
    }
}

type Shared = Arc<Mutex<Batch>>;

/// Every thread's batch, for the writer to take from.
#[derive(Default)]
pub(super) struct Batches {
    all: Mutex<Vec<Shared>>,
}

impl Batches {
    /// A batch for a new thread.
    pub(super) fn register(&self) -> Shared {
        let batch = Shared::default();
        lock(&self.all).push(batch.clone());
        batch
    }

    /// Takes every batch's lines: `spare` (emptied) is swapped with each
    /// batch that holds any, and `write` called with the lines and their
    /// count. The batches of threads that ended are forgotten once empty.
    pub(super) fn take(&self, spare: &mut String, mut write: impl FnMut(&str, usize)) {
        let batches: Vec<Shared> = {
            let mut all = lock(&self.all);
            all.retain(|batch| Arc::strong_count(batch) > 1 || lock(batch).lines > 0);
            all.clone()
        };
        for batch in batches {
            spare.clear();
            let lines = {
                let mut batch = lock(&batch);
                std::mem::swap(&mut batch.text, spare);
                std::mem::take(&mut batch.lines)
            };
            if lines > 0 {
                write(spare, lines);
            }
        }
        spare.clear();
    }
}

/// A panic while formatting leaves at worst a partial line: go on.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> impl FnOnce(&mut Clock, &mut String) -> bool + '_ {
        move |_, out| {
            out.push_str(text);
            true
        }
    }

    #[test]
    fn a_full_batch_drops_lines_until_taken() {
        let batches = Batches::default();
        let batch = batches.register();
        assert!(lock(&batch).push(2, line("a")));
        assert!(lock(&batch).push(2, |_, out| {
            out.push_str("half");
            false
        }));
        assert!(lock(&batch).push(2, line("b")));
        assert!(!lock(&batch).push(2, line("c")));

        let mut taken = Vec::new();
        batches.take(&mut String::new(), |text, lines| {
            taken.push((text.to_owned(), lines));
        });
        assert_eq!(taken, [("a\nb\n".to_owned(), 2)]);
        assert!(lock(&batch).push(2, line("d")));
    }

    #[test]
    fn batches_of_ended_threads_are_taken_then_forgotten() {
        let batches = Arc::new(Batches::default());
        let ended = batches.clone();
        std::thread::spawn(move || {
            let batch = ended.register();
            lock(&batch).push(10, line("last"));
        })
        .join()
        .unwrap();
        let mut taken = String::new();
        batches.take(&mut String::new(), |text, _| taken.push_str(text));
        assert_eq!(taken, "last\n");
        batches.take(&mut String::new(), |_, _| unreachable!("nothing left"));
        assert!(lock(&batches.all).is_empty());
    }
}
