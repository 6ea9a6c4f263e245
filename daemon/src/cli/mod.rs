//! Subcommands of the `livefill` binary, one file each; `main.rs` only parses and dispatches.

pub mod bench;
pub mod client;
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod install_plugin;
pub mod models;
pub mod runtime_args;
pub mod serve;
pub mod status;
