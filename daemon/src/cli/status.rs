//! `livefill status`: ask a running daemon what it is doing.
//!
//! Exists so a user (or a script) can check that the daemon is up, which device it uses, which
//! models it serves (kind, precision, resident or not, size, roles, why a load failed) and how
//! its memory budget is used, through the same socket and protocol the plugins use — also for a
//! daemon on another machine, through a forwarded socket (`--socket`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use livefill_protocol::{DaemonStatus, ModelInfo, default_socket_path};

use crate::cli::output::{out, outln};
use crate::client::DaemonClient;
use crate::models::inspect::{human_bytes, unet_kind};

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
    let models = client.list_models()?;
    let hello = &client.hello;
    outln!("socket:          {}", socket.display());
    outln!("daemon version:  {}", hello.daemon_version);
    outln!("model:           {}", status.model);
    outln!(
        "native size:     {}×{}",
        hello.native_width,
        hello.native_height
    );
    outln!("device:          {}", status.device);
    outln!("provider:        {}", status.execution_provider);
    outln!("modes:           {:?}", hello.capabilities.modes);
    outln!("queued jobs:     {}", status.queued_jobs);
    match status.running_request {
        Some(id) => outln!("running job:     request {id}"),
        None => outln!("running job:     none"),
    }
    outln!("clients:         {}", status.connected_clients);
    outln!("jobs done:       {}", status.jobs_completed);
    outln!("uptime:          {}", format_uptime(status.uptime_ms));
    outln!("resident:        {}", residency(&status, &models));
    outln!("loading now:     {}", or_none(&status.loading_model));
    out!("{}", models_report(&models));
    Ok(())
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "none" } else { text }
}

/// Bytes as "1.5 GiB", 0 as "not reported" (a daemon that does not count them sends 0).
fn reported_bytes(n: u64) -> String {
    if n == 0 {
        "not reported".into()
    } else {
        human_bytes(n)
    }
}

/// "1.2 GiB of a 6.0 GiB budget, 2 models", "1 of at most 2 models (1.2 GiB)".
fn residency(status: &DaemonStatus, models: &[ModelInfo]) -> String {
    let resident = models.iter().filter(|m| m.loaded).count();
    let count = match resident {
        1 => "1 model".to_string(),
        n => format!("{n} models"),
    };
    let bytes = reported_bytes(status.resident_bytes);
    if status.budget_bytes > 0 {
        format!(
            "{bytes} of a {} budget, {count}",
            human_bytes(status.budget_bytes)
        )
    } else if status.max_resident_models > 0 {
        format!(
            "{resident} of at most {} models ({bytes})",
            status.max_resident_models
        )
    } else {
        format!("{count} ({bytes}; no budget reported)")
    }
}

/// The models block: one header line per model, then its details, indented.
fn models_report(models: &[ModelInfo]) -> String {
    let mut out = format!("models ({}):\n", models.len());
    for m in models {
        let state = if m.loaded { "resident" } else { "not resident" };
        out.push_str(&format!("  {} [{state}]\n", m.name));
        let mut kind = format!(
            "{}, {}",
            unet_kind(m.unet_in_channels as usize, m.lcm_distilled),
            m.dtype
        );
        if m.taesd {
            kind.push_str(", TAESD");
        }
        out.push_str(&format!("    kind:        {kind}\n"));
        let shared = match m.shared_bytes {
            0 => String::new(),
            n => format!(" ({} shared with other models)", human_bytes(n)),
        };
        out.push_str(&format!(
            "    weights:     {}{shared}\n",
            reported_bytes(m.weight_bytes)
        ));
        let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
        let roles = if roles.is_empty() {
            "none".to_string()
        } else {
            roles.join(", ")
        };
        out.push_str(&format!("    roles:       {roles}\n"));
        out.push_str(&format!("    path:        {}\n", m.path));
        if !m.load_error.is_empty() {
            out.push_str(&format!("    load failed: {}\n", m.load_error));
        }
    }
    out
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
    use livefill_protocol::ModelRole;

    use super::*;
    use crate::client::test_samples::model_info;

    #[test]
    fn uptime() {
        assert_eq!(super::format_uptime(1_234), "1.2s");
        assert_eq!(super::format_uptime(61_000), "1m 01s");
        assert_eq!(super::format_uptime(3_723_000), "1h 02m 03s");
    }

    fn model(name: &str, loaded: bool) -> ModelInfo {
        ModelInfo {
            dtype: "fp16".into(),
            loaded,
            ..model_info(name)
        }
    }

    fn status(resident_bytes: u64, budget_bytes: u64, max_resident_models: u32) -> DaemonStatus {
        DaemonStatus {
            model: "a".into(),
            device: "cpu".into(),
            execution_provider: "CPUExecutionProvider".into(),
            queued_jobs: 0,
            running_request: None,
            connected_clients: 1,
            jobs_completed: 0,
            uptime_ms: 0,
            resident_bytes,
            budget_bytes,
            max_resident_models,
            loading_model: String::new(),
        }
    }

    #[test]
    fn residency_says_the_budget_in_its_unit() {
        let models = [model("a", true), model("b", true), model("c", false)];
        let gib = 1 << 30;
        assert_eq!(
            residency(&status(3 * gib, 6 * gib, 0), &models),
            "3.0 GiB of a 6.0 GiB budget, 2 models"
        );
        assert_eq!(
            residency(&status(3 * gib, 0, 2), &models),
            "2 of at most 2 models (3.0 GiB)"
        );
        assert_eq!(
            residency(&status(0, 0, 0), &models[..1]),
            "1 model (not reported; no budget reported)"
        );
    }

    #[test]
    fn models_show_kind_sizes_roles_and_load_errors() {
        let mut fill = model("sd15-inpaint", false);
        fill.unet_in_channels = 9;
        fill.lcm_distilled = true;
        fill.taesd = true;
        fill.roles = vec![ModelRole::Inpaint, ModelRole::Live];
        fill.weight_bytes = 2 << 30;
        fill.shared_bytes = 512 << 20;
        fill.load_error = "unet/model.onnx: truncated".into();
        let text = models_report(&[model("plain", true), fill]);
        for needle in [
            "models (2):",
            "  plain [resident]",
            "4-ch UNet, plain or LCM-LoRA fused, fp16\n",
            "    weights:     not reported\n",
            "    roles:       none\n",
            "  sd15-inpaint [not resident]",
            "9-ch inpainting UNet, LCM-distilled, fp16, TAESD",
            "    weights:     2.0 GiB (512.0 MiB shared with other models)",
            "    roles:       inpaint, live",
            "    path:        /models/sd15-inpaint",
            "    load failed: unet/model.onnx: truncated",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(text.matches("load failed").count(), 1, "{text}");
    }
}
