//! The one end-to-end test binary: the real gateway and the mock upstream in-process on
//! loopback, driven by a raw HTTP client and by the real SDK clients.

mod agents;
mod approvals;
mod audit;
mod auth;
mod clients;
mod crash;
mod faults;
mod fuzz_replay;
mod harness;
mod http2;
mod hygiene;
mod identity;
mod idp;
mod input;
mod lifecycle;
mod limits;
mod logs;
mod metrics;
mod openapi;
mod policy;
mod proxying;
mod streaming;
mod ui;
