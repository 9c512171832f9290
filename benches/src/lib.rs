//! The pieces of boxoffice's load generator, shared by the `boxoffice-load`
//! binary and the criterion benches: the load engine, the report, the
//! in-process system to aim at, and the baselines measured beside it.

pub mod baselines;
pub mod cpu;
pub mod load;
pub mod report;
pub mod system;

/// The same allocator as the `boxoffice` binary, so the load generator and
/// benches measure the system as it is shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
