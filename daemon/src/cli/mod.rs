//! Subcommands of the `livefill` binary, one file each; `main.rs` only parses and dispatches.

pub mod generate;
