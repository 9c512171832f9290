//! The binary as an operator runs it: a bad configuration value stops
//! `serve` and `up` before anything binds, with exit code 64 and the
//! variable named.

use std::net::TcpListener;
use std::process::Command;

/// Runs `boxoffice <args>` with one bad variable, listening on a port this
/// test holds: a process that bound before reading its configuration would
/// fail on the port instead, with another code and message.
fn refused(args: &[&str], variable: &str, value: &str) {
    let held = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let listen = held.local_addr().expect("an address").to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(args)
        .env("BOXOFFICE_LISTEN", &listen)
        .env(
            "BOXOFFICE_JWT_SECRET",
            "a-test-secret-that-is-long-enough-for-hs256",
        )
        // Nothing may be reached: the process must stop before connecting.
        .env(
            "BOXOFFICE_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/nothing",
        )
        .env("BOXOFFICE_REDIS_URL", "redis://127.0.0.1:1")
        .env("BOXOFFICE_EDGE_ADMIN_LISTEN", "off")
        .env(variable, value)
        .output()
        .expect("running boxoffice");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(64),
        "{args:?} with {variable}={value:?}: {stderr}"
    );
    assert!(
        stderr.contains(variable),
        "{args:?}: the message names {variable}: {stderr}"
    );
    drop(held);
}

#[test]
fn every_service_refuses_a_bad_value_before_binding() {
    refused(&["serve", "inventory"], "BOXOFFICE_HOLD_TTL_SECS", "0");
    refused(
        &["serve", "checkout"],
        "BOXOFFICE_CHECKOUT_WEBHOOK_TOLERANCE_SECS",
        "soon",
    );
    refused(
        &["serve", "catalog"],
        "BOXOFFICE_MEILISEARCH_URL",
        "ftp://x",
    );
    refused(&["serve", "accounts"], "BOXOFFICE_JWT_SECRET", "short");
    refused(&["serve", "catalog"], "BOXOFFICE_ADMIN_LISTEN", "nowhere");
    refused(&["serve", "edge"], "BOXOFFICE_EDGE_RATE_PER_USER", "many");
    refused(&["up"], "BOXOFFICE_HOLD_TTL_SECS", "0");
    refused(&["up"], "BOXOFFICE_MEILISEARCH_URL", "ftp://x");
}

#[test]
fn a_bad_shared_value_is_refused_too() {
    refused(&["serve", "inventory"], "BOXOFFICE_DB_POOL_SIZE", "none");
}
