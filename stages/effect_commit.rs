//! The `effect-commit` thread: group commits of effect completion records, then the
//! results' pipelined publishes and the commands' acks. The logic, and why one thread
//! does it, is `effects::recorder`; this is its loop.

use crate::effects::recorder::Committer;
use crate::stages::StageError;

/// Runs until every worker's recorder is dropped and every result publish has ended. A
/// failed commit or publish is the command's (left unacked for redelivery), never this
/// thread's.
pub fn run(mut committer: Committer) -> Result<(), StageError> {
    let mut open = true;
    while open || committer.is_publishing() {
        open = committer.step(open);
    }
    Ok(())
}
