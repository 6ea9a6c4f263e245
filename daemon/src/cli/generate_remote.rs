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
use crate::scheduler::ModelDefaults;

/// Longest wait for one message of the daemon (a model load step, or a whole large request on a
/// CPU).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// The defaults of the model a request will run on, as far as the daemon says them.
#[derive(Debug, Clone, PartialEq)]
struct ModelChoice {
    defaults: ModelDefaults,
    /// Set when the defaults are a guess (the daemon announces only its hello model's): why.
    guess: Option<String>,
}

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
    let choice = choose_defaults(&client.hello, &models, &request, socket)?;
    args.sampling.apply(&mut request, &choice.defaults);
    if let Some(why) = &choice.guess {
        pin_sampler(&mut request, &choice.defaults);
        eprintln!("note: {why}");
    }
    eprintln!("sampler: {}", args.sampling.describe(&choice.defaults));
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

/// The sampler defaults for `request` on this daemon: the named model (which must be one of
/// `models`), else the one serving the request's role; the hello's announced defaults when that
/// is the hello's model (or none is known), else what its `ListModels` entry says (an
/// LCM-distilled UNet → LCM; otherwise a guess, since an LCM-LoRA fused model looks plain there).
fn choose_defaults(
    hello: &DaemonHello,
    models: &[ModelInfo],
    request: &GenerateRequest,
    socket: &Path,
) -> anyhow::Result<ModelChoice> {
    let entry = if request.model.is_empty() {
        let role = role_for(request);
        models.iter().find(|m| m.roles.contains(&role))
    } else {
        let found = models.iter().find(|m| m.name == request.model);
        Some(found.with_context(|| unknown_model(&request.model, models, socket))?)
    };
    let announced = ModelChoice {
        defaults: announced_defaults(&hello.capabilities),
        guess: None,
    };
    Ok(match entry {
        None => announced,
        Some(m) if m.name == hello.model => announced,
        Some(m) if m.lcm_distilled => ModelChoice {
            defaults: ModelDefaults::LCM,
            guess: None,
        },
        Some(m) => ModelChoice {
            defaults: ModelDefaults::QUALITY,
            guess: Some(format!(
                "the daemon announces defaults for {:?} only; {:?} has no LCM-distilled UNet, so \
                 this runs the defaults of an ordinary model (an LCM-LoRA fused one needs \
                 --sampler lcm --steps 4 --guidance 1)",
                hello.model, m.name
            )),
        },
    })
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

/// Names the guessed default sampler in the request, so that what runs is what was printed.
fn pin_sampler(request: &mut GenerateRequest, defaults: &ModelDefaults) {
    if request.sampler.is_none() {
        request.sampler = Some(defaults.choice.sampler);
        request.spacing = request.spacing.or(defaults.choice.spacing);
    }
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
    use livefill_protocol::{Sampler, Spacing};

    use super::*;
    use crate::client::test_samples::{hello, model_info};
    use crate::request::default_request;

    fn socket() -> &'static Path {
        Path::new("/run/x.sock")
    }

    fn model(name: &str, lcm_distilled: bool, roles: &[ModelRole]) -> ModelInfo {
        ModelInfo {
            lcm_distilled,
            roles: roles.to_vec(),
            ..model_info(name)
        }
    }

    fn request(mode: Mode, model: &str) -> GenerateRequest {
        let mut r = default_request(mode);
        r.model = model.into();
        r
    }

    #[test]
    fn the_hello_model_gets_the_announced_defaults() {
        let announced = announced_defaults(&hello("a").capabilities);
        let models = [model("a", false, &[ModelRole::Default])];
        for name in ["", "a"] {
            let choice = choose_defaults(
                &hello("a"),
                &models,
                &request(Mode::Txt2Img, name),
                socket(),
            );
            assert_eq!(choice.unwrap().defaults, announced, "model {name:?}");
        }
        // Today's daemon: one model, no roles.
        let bare = [model("a", false, &[])];
        let choice =
            choose_defaults(&hello("a"), &bare, &request(Mode::Inpaint, ""), socket()).unwrap();
        assert_eq!((choice.defaults.steps, choice.guess), (3, None));
    }

    #[test]
    fn other_models_get_their_kind_s_defaults_and_a_guess_is_said() {
        let models = [
            model("a", false, &[ModelRole::Default]),
            model("fill", false, &[ModelRole::Inpaint]),
            model("lcm", true, &[ModelRole::Live]),
        ];
        let lcm = choose_defaults(
            &hello("a"),
            &models,
            &request(Mode::Txt2Img, "lcm"),
            socket(),
        )
        .unwrap();
        assert_eq!((lcm.defaults, lcm.guess), (ModelDefaults::LCM, None));
        let fill =
            choose_defaults(&hello("a"), &models, &request(Mode::Inpaint, ""), socket()).unwrap();
        assert_eq!(fill.defaults, ModelDefaults::QUALITY);
        assert!(fill.guess.unwrap().contains("\"fill\""));

        let mut pinned = request(Mode::Inpaint, "");
        pin_sampler(&mut pinned, &ModelDefaults::QUALITY);
        assert_eq!(pinned.sampler, Some(Sampler::Dpmpp2m));
        assert_eq!(pinned.spacing, Some(Spacing::Karras));
    }

    #[test]
    fn an_unknown_model_is_refused_naming_the_served_ones() {
        let models = [model("a", false, &[]), model("b", true, &[])];
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
