//! The accounts service: users with argon2 password hashes and roles, and
//! the short-lived signed access tokens (JWT) the edge checks on every call,
//! and social login with OpenID Connect providers ([`social`]).
//!
//! Token issuing and checking live together in [`token`], so the edge and
//! accounts can never disagree about algorithm, issuer or audience.

pub mod config;
mod delivery;
pub mod domain;
pub mod error;
mod export;
pub mod grpc;
mod password;
mod revocations;
pub mod server;
pub mod service;
pub mod social;
pub mod store;
mod throttle;
pub mod token;

pub use config::{AccountsConfig, TokenConfig};
pub use revocations::RevocationHub;
pub use server::AccountsComponent;
