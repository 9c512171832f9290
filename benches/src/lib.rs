//! The pieces of boxoffice's load generator, shared by the `boxoffice-load`
//! binary and the criterion benches: the load engine, the report, the
//! in-process system to aim at, and the baselines measured beside it.

pub mod baselines;
pub mod load;
pub mod report;
pub mod system;
