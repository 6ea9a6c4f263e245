//! `livefill generate --socket PATH` (or `--daemon`): the same request, sent to a running daemon.
//!
//! Exists so a script, a test or a user checking a remote GPU can use a daemon — the local one,
//! or one on another machine through an ssh-forwarded socket — exactly as the plugins do, and get
//! what the in-process run gives: the request is built from the same flags
//! (`generate::build_request`) and written by the same `generate::write_result`; only the
//! sampler defaults come from the daemon (its hello, or the model's `ListModels` entry) instead
//! of a model folder, and `--model` names one of the daemon's models.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use livefill_protocol::{DaemonHello, GenerateRequest, GenerateResult, Mode, ModelInfo, ModelRole};

use super::generate::{GenerateArgs, build_request, write_result};
use super::sampler_args::announced_defaults;
use crate::client::DaemonClient;
use crate::generator::GenerateOutput;
use crate::request::DEFAULT_MAX_IMAGE_SIDE;
use crate::scheduler::{ModelDefaults, SamplerChoice};

/// Longest wait for one message of the daemon (a model load step, or a whole large request on a
/// CPU).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(args: &GenerateArgs, socket: &Path) -> anyhow::Result<()> {
    refuse_in_process_flags(args)?;
    let mut request = build_request(args)?;
    request.request_id = 1;
    request.seed = args.seed;
    request.model = match args.model.as_deref() {
        Some(name) => name.to_str().context("--model must be UTF-8")?.to_string(),
        None => String::new(),
    };
    let mut client = DaemonClient::connect(socket, "livefill generate", REPLY_TIMEOUT)?;
    let models = client
        .list_models()
        .with_context(|| format!("asking the daemon at {} for its models", socket.display()))?;
    let defaults = choose_defaults(&client.hello, &models, &request, socket)?;
    args.sampling.apply(&mut request, &defaults);
    eprintln!("sampler: {}", args.sampling.describe(&defaults));
    let result = client
        .generate(&request, |update| {
            eprintln!("{}", super::describe_update(&update));
        })
        .with_context(|| format!("generating through the daemon at {}", socket.display()))?;
    write_result(args, &request, &output_of(result))
}

/// Flags that only mean something when this process runs the model.
fn refuse_in_process_flags(args: &GenerateArgs) -> anyhow::Result<()> {
    if args.noise.is_some() {
        bail!(
            "--noise works in process only (requests carry no noise): leave out --socket/--daemon"
        );
    }
    let mut given = args.runtime.given();
    if args.max_image_side != DEFAULT_MAX_IMAGE_SIDE {
        given.push("--max-image-side");
    }
    if !given.is_empty() {
        bail!(
            "{} choose how this process runs the model; with --socket/--daemon the daemon's own \
             flags (`livefill serve`) decide: leave them out",
            given.join(", ")
        );
    }
    Ok(())
}

/// The role the daemon picks a model by for a request that names none.
fn role_for(request: &GenerateRequest) -> ModelRole {
    match request.mode {
        Mode::Inpaint | Mode::Outpaint => ModelRole::Inpaint,
        Mode::Txt2Img | Mode::Img2Img => ModelRole::Default,
    }
}

/// The sampler defaults for `request` on this daemon: those `ListModels` gives for the named
/// model (which must be one of `models`), else for the one serving the request's role; the
/// hello's announced defaults when no model is listed for it.
fn choose_defaults(
    hello: &DaemonHello,
    models: &[ModelInfo],
    request: &GenerateRequest,
    socket: &Path,
) -> anyhow::Result<ModelDefaults> {
    let entry = if request.model.is_empty() {
        let role = role_for(request);
        models.iter().find(|m| m.roles.contains(&role))
    } else {
        let found = models.iter().find(|m| m.name == request.model);
        Some(found.with_context(|| unknown_model(&request.model, models, socket))?)
    };
    Ok(match entry {
        Some(m) => listed_defaults(m),
        None => announced_defaults(&hello.capabilities),
    })
}

/// The defaults `ListModels` gives for a model.
fn listed_defaults(model: &ModelInfo) -> ModelDefaults {
    ModelDefaults {
        choice: SamplerChoice {
            sampler: model.default_sampler,
            spacing: model.default_spacing,
            eta: None,
        },
        steps: model.default_steps,
        guidance: model.default_guidance,
    }
}

fn unknown_model(name: &str, models: &[ModelInfo], socket: &Path) -> String {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let serves = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    format!(
        "the daemon at {0} serves no model {name:?} (it serves: {serves}; `livefill status \
         --socket {0}` describes them)",
        socket.display()
    )
}

fn output_of(result: GenerateResult) -> GenerateOutput {
    GenerateOutput {
        image: result.image,
        offset_x: result.offset_x,
        offset_y: result.offset_y,
        seed: result.seed,
        timings: result.timings,
        model: result.model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_samples::{hello, model_info};
    use crate::request::default_request;

    fn socket() -> &'static Path {
        Path::new("/run/x.sock")
    }

    fn model(name: &str, defaults: ModelDefaults, roles: &[ModelRole]) -> ModelInfo {
        ModelInfo {
            roles: roles.to_vec(),
            default_sampler: defaults.choice.sampler,
            default_spacing: defaults.choice.spacing,
            default_steps: defaults.steps,
            default_guidance: defaults.guidance,
            ..model_info(name)
        }
    }

    fn request(mode: Mode, model: &str) -> GenerateRequest {
        let mut r = default_request(mode);
        r.model = model.into();
        r
    }

    #[test]
    fn each_model_gets_the_defaults_listed_for_it() {
        let models = [
            model("a", ModelDefaults::QUALITY, &[ModelRole::Default]),
            model("fill", ModelDefaults::QUALITY, &[ModelRole::Inpaint]),
            model("lcm", ModelDefaults::LCM, &[ModelRole::Live]),
        ];
        let pick =
            |mode, name| choose_defaults(&hello("a"), &models, &request(mode, name), socket());
        assert_eq!(pick(Mode::Txt2Img, "lcm").unwrap(), ModelDefaults::LCM);
        assert_eq!(pick(Mode::Txt2Img, "").unwrap(), ModelDefaults::QUALITY);
        assert_eq!(pick(Mode::Inpaint, "").unwrap(), ModelDefaults::QUALITY);
        // A daemon listing no model for the role: the hello's announced defaults.
        let bare = [model("a", ModelDefaults::LCM, &[])];
        let choice =
            choose_defaults(&hello("a"), &bare, &request(Mode::Inpaint, ""), socket()).unwrap();
        assert_eq!(choice, announced_defaults(&hello("a").capabilities));
        assert_eq!(choice.steps, 3);
    }

    #[test]
    fn an_unknown_model_is_refused_naming_the_served_ones() {
        let models = [
            model("a", ModelDefaults::QUALITY, &[]),
            model("b", ModelDefaults::LCM, &[]),
        ];
        let err = choose_defaults(&hello("a"), &models, &request(Mode::Txt2Img, "c"), socket())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("at /run/x.sock serves no model \"c\""),
            "{text}"
        );
        assert!(text.contains("it serves: a, b"), "{text}");
    }
}
