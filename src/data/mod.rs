//! The per-core data plane, one file per phase of DESIGN §2, in order:
//!
//! ```text
//! worker: accept ─▶ conn::handle_conn
//!   head::read_head ─▶ upgrade::validate_upgrade ─▶ route::route ─▶ route::check_origin
//!   ─▶ authz::authorize ─▶ balance::pick_node ─▶ upstream::connect_upstream
//!   ─▶ upstream::forward_head ─▶ upstream::read_response_head ─▶ relay::relay ─▶ conn::finish
//! ```
//! Everything here runs on a worker thread: no locks, no blocking calls, no shared RMW atomics.

pub mod access;
pub mod authz;
pub mod balance;
pub mod conn;
pub mod head;
pub mod pipes;
pub mod reject;
pub mod relay;
pub mod route;
pub mod stop;
pub mod token_cache;
pub mod upgrade;
pub mod upstream;
pub mod verify;
pub mod worker;
