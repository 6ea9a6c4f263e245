//! `livefill status`: ask a running daemon what it is doing.
//!
//! Exists so a user (or a script) can check that the daemon is up, which model and device it
//! uses, and how busy it is, through the same socket and protocol the plugins use.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use livefill_protocol::default_socket_path;

use crate::client::DaemonClient;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Socket path (default: as for `livefill serve`).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let socket = args.socket.unwrap_or_else(default_socket_path);
    let mut client = DaemonClient::connect(&socket, "livefill status", Duration::from_secs(10))?;
    let status = client.status()?;
    let hello = &client.hello;
    println!("socket:          {}", socket.display());
    println!("daemon version:  {}", hello.daemon_version);
    println!("model:           {}", status.model);
    println!(
        "native size:     {}×{}",
        hello.native_width, hello.native_height
    );
    println!("device:          {}", status.device);
    println!("provider:        {}", status.execution_provider);
    println!("modes:           {:?}", hello.capabilities.modes);
    println!("queued jobs:     {}", status.queued_jobs);
    match status.running_request {
        Some(id) => println!("running job:     request {id}"),
        None => println!("running job:     none"),
    }
    println!("clients:         {}", status.connected_clients);
    println!("jobs done:       {}", status.jobs_completed);
    println!("uptime:          {}", format_uptime(status.uptime_ms));
    Ok(())
}

fn format_uptime(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{}.{:01}s", s, ms % 1000 / 100)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime() {
        assert_eq!(super::format_uptime(1_234), "1.2s");
        assert_eq!(super::format_uptime(61_000), "1m 01s");
        assert_eq!(super::format_uptime(3_723_000), "1h 02m 03s");
    }
}
