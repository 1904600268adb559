//! The gas meter.

/// The budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfGas;

/// Counts gas spent against a limit.
#[derive(Debug, Clone)]
pub(crate) struct Gas {
    limit: u64,
    used: u64,
}

impl Gas {
    pub(crate) fn new(limit: u64) -> Gas {
        Gas { limit, used: 0 }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Spends `n` units, or fails (leaving the meter at its limit) if that would exceed it.
    pub(crate) fn charge(&mut self, n: u64) -> Result<(), OutOfGas> {
        let next = self.used.saturating_add(n);
        if next > self.limit {
            self.used = self.limit;
            Err(OutOfGas)
        } else {
            self.used = next;
            Ok(())
        }
    }
}

/// Gas charged for reading or writing `bytes` bytes of text: 1 per full 64 bytes.
pub(crate) fn text_cost(bytes: usize) -> u64 {
    u64::try_from(bytes / 64).unwrap_or(u64::MAX)
}
