//! The `boxoffice-paysim` binary: the payment provider simulator as its own
//! process (`boxoffice paysim` runs the same thing).

use std::process::ExitCode;

fn main() -> ExitCode {
    boxoffice_paysim::main_with_env()
}
