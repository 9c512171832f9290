//! Pausing consumer groups of this process by name, and resuming them: a
//! paused group finishes the batch it is in, lets go of its streams (its
//! lease and LISTEN connection; another instance of the group may take
//! over) and reads nothing until it is resumed, when it goes on from its
//! checkpoint. Nothing is lost or skipped: the events wait in the stream.
//!
//! For measuring what a group costs beside the work it follows (the
//! checkout benchmark prices each group this way), and for an operator
//! who wants a group's work elsewhere for a while.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use tokio::sync::watch;

fn switch() -> &'static watch::Sender<BTreeSet<String>> {
    static SWITCH: OnceLock<watch::Sender<BTreeSet<String>>> = OnceLock::new();
    SWITCH.get_or_init(|| watch::Sender::new(BTreeSet::new()))
}

/// Pauses every group named `group` in this process (also one started
/// later), after the batch it is handling.
pub fn pause_group(group: &str) {
    switch().send_if_modified(|paused| paused.insert(group.to_owned()));
}

/// Resumes `group`; it goes on from its checkpoint.
pub fn resume_group(group: &str) {
    switch().send_if_modified(|paused| paused.remove(group));
}

/// The groups paused in this process.
pub fn paused_groups() -> BTreeSet<String> {
    switch().borrow().clone()
}

/// One runner's view of the switch.
pub(crate) struct Switch {
    receiver: watch::Receiver<BTreeSet<String>>,
}

impl Switch {
    pub(crate) fn follow() -> Self {
        Self {
            receiver: switch().subscribe(),
        }
    }

    pub(crate) fn is_paused(&self, group: &str) -> bool {
        self.receiver.borrow().contains(group)
    }

    /// Returns once `group` is paused (or resumed, for `paused = false`).
    pub(crate) async fn until(&mut self, group: &str, paused: bool) {
        // The sender lives in a static: it is never dropped.
        let _ = self
            .receiver
            .wait_for(|set| set.contains(group) == paused)
            .await;
    }
}
