//! An event's change stream as inventory reads it: every hold, release,
//! expiry, sale and status change, in order, under an epoch that a rebuilt
//! state starts anew. WatchAvailability streams these; a cursor is a
//! position in one epoch.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Held,
    Released,
    Expired,
    Sold,
    Unsold,
    Status,
    /// The state was rebuilt; only the first entry of an epoch.
    Reset,
}

#[derive(Clone, Debug)]
pub struct Change {
    pub id: String,
    pub kind: ChangeKind,
    pub seats: Vec<u32>,
}

/// A read of the change stream after a cursor.
pub enum ChangesOutcome {
    Changes(Vec<Change>),
    /// The cursor cannot be resumed: start again from a snapshot.
    Reset,
    NeedsRebuild,
}
