//! End-to-end tests of boxoffice against real PostgreSQL and Redis: one test
//! binary, one module per area.

mod catalog;
mod harness;
