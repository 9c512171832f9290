//! The pieces of boxoffice's load generator, shared by the `boxoffice-load`
//! binary and the criterion benches: the load engine, the report, and an
//! in-process system to aim at.

pub mod load;
pub mod report;
pub mod system;
