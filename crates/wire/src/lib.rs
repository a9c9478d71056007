//! The Anthropic Messages API as it appears on the wire, with no IO: the error envelope every
//! Airlock-made error uses, an incremental SSE decoder and its encoder, and the light request
//! inspection the data plane needs before policy runs.
//!
//! Invariant: this crate never depends on an async runtime or an HTTP stack, so its tests build
//! and run in seconds.

pub mod error;
pub mod fuzz;
pub mod request;
pub mod sse;
pub mod usage;

pub use error::{ErrorType, envelope, sse_error_event};
pub use request::{InspectError, MessagesRequest, inspect_messages, json_len, tool_result_text};
pub use sse::{Decoder, DecoderError, Event, encode};
pub use usage::{Usage, usage_of, usage_of_event};
