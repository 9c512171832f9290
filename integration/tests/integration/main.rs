//! End-to-end tests of boxoffice against real PostgreSQL and Redis: one test
//! binary, one module per area.

// The modules share helpers with `pub`; nothing here is visible outside this
// test binary, so the workspace's unreachable-pub lint does not apply.
#![allow(unreachable_pub)]

mod accounts;
mod audit;
mod catalog;
mod checkout;
mod checkout_crash;
mod checkout_gateway;
mod checkout_paypal;
mod checkout_webhooks;
mod commerce;
mod discovery;
mod door;
mod edge;
mod edge_world;
mod events;
mod harness;
mod hold_extension;
mod inventory;
mod inventory_cluster;
mod mesh;
mod notify;
mod pricing;
mod reviews;
mod search;
mod sessions;
mod social_login;
mod statuses;
mod system;
mod system_world;
mod waiting_room;
mod waiting_room_edge;
mod waitlist;
mod web;
mod webhooks;
