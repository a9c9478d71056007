//! The one end-to-end test binary: the real gateway and the mock upstream in-process on
//! loopback, driven by a raw HTTP client and by the real SDK clients.

mod agents;
mod audit;
mod auth;
mod clients;
mod crash;
mod faults;
mod harness;
mod identity;
mod idp;
mod input;
mod lifecycle;
mod proxying;
mod streaming;
