//! The edge: boxoffice's one front door. A single listener speaks gRPC over
//! HTTP/2 and grpc-web over HTTP/1.1 (binary and text, with CORS), serves
//! health and reflection itself, and proxies every routed gRPC method as
//! plain HTTP/2 to balanced, health-checked upstream instances, after
//! authentication, rate limits, admission and deadlines. A second, admin
//! listener serves Prometheus metrics.
//!
//! Code map: `config` (file + env), `access` (who may call what: the
//! classes and the built-in table), `routes` (the table resolved at start:
//! where each method goes), `proxy` (the request path), `auth` (bearer
//! tokens, with a bounded cache of verified ones), `upstream` (clusters,
//! HTTP/2 connections, balancing, health watches), `limits` (token buckets),
//! `context` (request id, trace context, deadlines), `metrics` (Prometheus),
//! `server` (the listeners; plain gRPC skips the browser layers), `web` (the
//! web app's files for GET/HEAD), `audit` (admin calls recorded before they
//! are forwarded).

mod access;
mod audit;
mod auth;
pub mod config;
mod context;
mod discovery;
mod limits;
mod metrics;
mod proxy;
mod revocation;
pub mod routes;
pub mod server;
mod sold_out;
mod upstream;
mod web;

pub use config::EdgeConfig;
pub use server::{Edge, EdgeHandle, EndpointStats};
