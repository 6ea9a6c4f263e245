//! Several models in one daemon, end to end on the tiny fixtures: requests for each model, in any
//! interleaving and from several clients, get that model's output (compared byte for byte with
//! in-process runs); requests without a model get the model of their role; models load on first
//! use with progress; the least recently used model is unloaded under a small budget;
//! byte-identical parts are loaded once; a bad model among good ones fails only its requests.

mod daemon_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use daemon_support::*;
use livefill::engine::{Engine, EngineOptions};
use livefill::generator::{CancelToken, ImageGenerator};
use livefill::onnx::runtime::{DeviceRequest, RuntimeOptions};
use livefill_protocol::{
    ClientMessage, DaemonMessage, ErrorCode, GenerateRequest, ModelInfo, ModelRole, RgbaImage,
};

/// The output of `request` on fixture folder `model`, run in process (the reference).
fn in_process(model: &Path, request: &GenerateRequest) -> RgbaImage {
    let mut engine = Engine::load(&EngineOptions {
        model: model.to_path_buf(),
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            intra_threads: Some(1),
            ..Default::default()
        },
        max_image_side: 8192,
    })
    .expect("in-process engine");
    let seed = request.seed.expect("tests use fixed seeds");
    engine
        .generate(request, seed, &CancelToken::new(), &mut |_| {})
        .expect("in-process run")
        .image
}

/// A copy of fixture `name` at `dir/new_name`.
fn fixture_copy(name: &str, dir: &Path, new_name: &str) -> PathBuf {
    let to = dir.join(new_name);
    copy_dir(&fixture(name), &to);
    to
}

fn models_arg(models: &[&Path]) -> Vec<String> {
    models
        .iter()
        .flat_map(|m| ["--model".to_string(), m.display().to_string()])
        .collect()
}

/// A daemon serving `models` (the first is the default) with `extra` flags.
fn start(tag: &str, models: &[&Path], extra: &[&str]) -> Daemon {
    let dir = temp_dir(tag);
    let socket = dir.join("run").join("livefill.sock");
    let mut args = models_arg(&models[1..]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_at(models[0], dir, socket, &args)
}

fn list_models(client: &mut Client) -> Vec<ModelInfo> {
    client.send(&ClientMessage::ListModels);
    loop {
        if let DaemonMessage::Models(models) = client.recv() {
            return models;
        }
    }
}

fn by_name(models: &[ModelInfo]) -> HashMap<String, ModelInfo> {
    models.iter().map(|m| (m.name.clone(), m.clone())).collect()
}

fn resident(client: &mut Client) -> Vec<String> {
    let mut names: Vec<String> = list_models(client)
        .into_iter()
        .filter(|m| m.loaded)
        .map(|m| m.name)
        .collect();
    names.sort();
    names
}

/// Sends `request` and returns every message about it, the final one last.
fn run(client: &mut Client, request: GenerateRequest) -> Vec<DaemonMessage> {
    let id = request.request_id;
    client.send(&ClientMessage::Generate(request));
    client.until_final(id, &mut Vec::new())
}

fn result_of(messages: &[DaemonMessage]) -> (String, RgbaImage) {
    match messages.last() {
        Some(DaemonMessage::Result(r)) => (r.model.clone(), r.image.clone()),
        other => panic!("expected a result, got {other:?} after {messages:?}"),
    }
}

fn named(mut request: GenerateRequest, model: &str) -> GenerateRequest {
    request.model = model.to_string();
    request
}

#[test]
fn several_models_answer_interleaved_requests_from_several_clients() {
    const NAMES: [&str; 3] = ["tiny-sd", "tiny-lcm", "tiny-sd-inpaint"];
    let folders: Vec<PathBuf> = NAMES.iter().map(|n| fixture(n)).collect();
    let refs: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
    let daemon = start("models", &refs, &[]);

    let (mut probe, hello) = daemon.client("probe");
    assert_eq!(hello.model, "tiny-sd", "the first model is the default");
    let listed = by_name(&list_models(&mut probe));
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed["tiny-sd"].loaded, "the default is resident at start");
    assert!(!listed["tiny-lcm"].loaded && !listed["tiny-sd-inpaint"].loaded);
    assert_eq!(listed["tiny-sd-inpaint"].unet_in_channels, 9);
    assert!(
        listed["tiny-sd-inpaint"]
            .roles
            .contains(&ModelRole::Inpaint)
    );
    assert!(listed["tiny-sd"].roles.contains(&ModelRole::Default));
    let weights: u64 = listed.values().map(|m| m.weight_bytes).sum();
    assert!(listed.values().all(|m| m.weight_bytes > 0));

    // Each client asks for the three models in its own order.
    let request = |client: usize, i: usize| {
        let model = NAMES[(client + i) % 3];
        let id = (client * 10 + i) as u64;
        named(txt2img(id, 64, 2), model)
    };
    let handles: Vec<_> = (0..3)
        .map(|c| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket);
                client.hello(&format!("client-{c}"));
                // Send all first, then read: the jobs interleave in the daemon's queue.
                let requests: Vec<GenerateRequest> = (0..4).map(|i| request(c, i)).collect();
                for r in &requests {
                    client.send(&ClientMessage::Generate(r.clone()));
                }
                let mut others = Vec::new();
                requests
                    .into_iter()
                    .map(|r| {
                        let mut mine: Vec<DaemonMessage> = others
                            .iter()
                            .filter(|m: &&DaemonMessage| m.request_id() == Some(r.request_id))
                            .cloned()
                            .collect();
                        others.retain(|m| m.request_id() != Some(r.request_id));
                        if !mine.last().is_some_and(is_final) {
                            mine.extend(client.until_final(r.request_id, &mut others));
                        }
                        (r, mine)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answered: Vec<(GenerateRequest, Vec<DaemonMessage>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let mut loading_seen: HashMap<String, usize> = HashMap::new();
    for (request, messages) in &answered {
        let (model, image) = result_of(messages);
        assert_eq!(model, request.model, "served by the model it named");
        let expected = in_process(&fixture(&request.model), request);
        assert!(
            image == expected,
            "request {} on {}: the daemon's pixels differ from the in-process run",
            request.request_id,
            request.model
        );
        let finals = messages.iter().filter(|m| is_final(m)).count();
        assert_eq!(finals, 1, "exactly one final message: {messages:?}");
        for m in messages {
            if let DaemonMessage::ModelLoading { model, .. } = m {
                *loading_seen.entry(model.clone()).or_default() += 1;
            }
        }
    }
    for model in ["tiny-lcm", "tiny-sd-inpaint"] {
        assert!(
            loading_seen.get(model).copied().unwrap_or(0) > 0,
            "jobs waiting for {model} were told it was loading: {loading_seen:?}"
        );
    }
    assert!(
        !loading_seen.contains_key("tiny-sd"),
        "the default was resident"
    );

    let listed = by_name(&list_models(&mut probe));
    assert!(
        listed.values().all(|m| m.loaded),
        "all three resident: {listed:?}"
    );
    // The fixtures share byte-identical VAE decoders, tokenizers, …: loaded once.
    assert!(
        listed.values().all(|m| m.shared_bytes > 0),
        "shared parts reported: {listed:?}"
    );
    let status = probe.status();
    assert!(
        status.resident_bytes < weights,
        "shared parts counted once: {} of {weights}",
        status.resident_bytes
    );
    assert!(status.resident_bytes > listed["tiny-sd"].weight_bytes);
    assert!(status.budget_bytes > 0 || status.max_resident_models > 0);
    assert!(
        daemon
            .log_text()
            .contains("byte-identical graph already loaded")
    );
}

#[test]
fn requests_without_a_model_get_the_model_of_their_role() {
    let dir = temp_dir("roles-src");
    // A default that is not an LCM model: Live must go to the LCM one.
    let plain = fixture_copy("tiny-sd", &dir, "tiny-plain");
    let scheduler = plain.join("scheduler/scheduler_config.json");
    let text = std::fs::read_to_string(&scheduler).unwrap();
    std::fs::write(
        &scheduler,
        text.replace("\"LCMScheduler\"", "\"EulerDiscreteScheduler\""),
    )
    .unwrap();
    let lcm = fixture("tiny-lcm");
    let inpainting = fixture("tiny-sd-inpaint");
    let daemon = start("roles", &[&plain, &lcm, &inpainting], &[]);
    let (mut client, hello) = daemon.client("roles");
    assert_eq!(hello.model, "tiny-plain");

    let listed = by_name(&list_models(&mut client));
    assert_eq!(listed["tiny-plain"].roles, vec![ModelRole::Default]);
    assert_eq!(listed["tiny-lcm"].roles, vec![ModelRole::Live]);
    assert_eq!(listed["tiny-sd-inpaint"].roles, vec![ModelRole::Inpaint]);
    // Each model's own defaults: LCM for the LCM one, DPM++ 2M Karras for the plain one.
    assert_eq!(
        listed["tiny-lcm"].default_sampler,
        livefill_protocol::Sampler::Lcm
    );
    assert_eq!(listed["tiny-lcm"].default_steps, 4);
    assert_eq!(
        listed["tiny-plain"].default_sampler,
        livefill_protocol::Sampler::Dpmpp2m
    );
    assert_eq!(listed["tiny-plain"].default_steps, 20);

    let (model, _) = result_of(&run(&mut client, txt2img(1, 64, 2)));
    assert_eq!(model, "tiny-plain");
    let (model, image) = result_of(&run(&mut client, inpaint(2, 64, 64)));
    assert_eq!(
        model, "tiny-sd-inpaint",
        "Fill goes to the inpainting model"
    );
    assert!(image == in_process(&inpainting, &inpaint(2, 64, 64)));
    let mut outpaint = inpaint(3, 64, 64);
    outpaint.mode = livefill_protocol::Mode::Outpaint;
    outpaint.mask = None;
    outpaint.extend.right = 16;
    let (model, _) = result_of(&run(&mut client, outpaint));
    assert_eq!(model, "tiny-sd-inpaint", "Expand too");
    let mut img2img = inpaint(4, 64, 64);
    img2img.mode = livefill_protocol::Mode::Img2Img;
    img2img.mask = None;
    img2img.strength = 0.5;
    let (model, _) = result_of(&run(&mut client, live(img2img.clone())));
    assert_eq!(model, "tiny-lcm", "Live goes to the LCM model");
    let (model, _) = result_of(&run(&mut client, img2img));
    assert_eq!(model, "tiny-plain", "a final img2img stays on the default");

    let unknown = run(&mut client, named(txt2img(5, 64, 2), "no-such-model"));
    match unknown.last() {
        Some(DaemonMessage::Error(e)) => {
            assert_eq!(e.code, ErrorCode::NoModel);
            assert!(e.message.contains("tiny-lcm"), "names what is served: {e}");
        }
        other => panic!("expected NoModel, got {other:?}"),
    }
}

#[test]
fn the_least_recently_used_model_is_unloaded_beyond_the_budget() {
    let names = ["tiny-sd", "tiny-lcm", "tiny-sd-inpaint"];
    let folders: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
    let refs: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
    let daemon = start("lru", &refs, &["--max-resident", "2"]);
    let (mut client, _) = daemon.client("lru");
    assert_eq!(client.status().max_resident_models, 2);
    let mut id = 0;
    let mut use_model = |client: &mut Client, model: &str| {
        id += 1;
        let request = named(txt2img(id, 64, 2), model);
        let (served, image) = result_of(&run(client, request.clone()));
        assert_eq!(served, model);
        assert!(
            image == in_process(&fixture(model), &request),
            "{model} output"
        );
    };
    use_model(&mut client, "tiny-lcm");
    assert_eq!(resident(&mut client), ["tiny-lcm", "tiny-sd"]);
    // Loading a third model unloads the least recently used one (tiny-sd, used at start only).
    use_model(&mut client, "tiny-sd-inpaint");
    assert_eq!(resident(&mut client), ["tiny-lcm", "tiny-sd-inpaint"]);
    use_model(&mut client, "tiny-lcm");
    // tiny-sd comes back (loaded again, same output); the inpainting model, now least recently
    // used, goes.
    use_model(&mut client, "tiny-sd");
    assert_eq!(resident(&mut client), ["tiny-lcm", "tiny-sd"]);
    assert!(
        daemon
            .log_text()
            .contains("unloading the least recently used model")
    );
}

#[test]
fn a_bad_model_among_good_ones_fails_only_its_requests() {
    let dir = temp_dir("bad-src");
    let truncated = fixture_copy("tiny-sd", &dir, "cut-unet");
    let unet = truncated.join("unet/model.onnx");
    let bytes = std::fs::read(&unet).unwrap();
    std::fs::write(&unet, &bytes[..bytes.len() / 2]).unwrap();
    // Passes the header check, fails when loaded: its tokenizer is not JSON.
    let bad_tokenizer = fixture_copy("tiny-sd", &dir, "bad-tokenizer");
    std::fs::write(bad_tokenizer.join("tokenizer/vocab.json"), b"{ not json").unwrap();
    let good = fixture("tiny-lcm");
    let daemon = start("bad", &[&good, &truncated, &bad_tokenizer], &[]);
    let (mut client, _) = daemon.client("bad");

    let listed = by_name(&list_models(&mut client));
    assert!(
        listed["cut-unet"].load_error.contains("unet"),
        "the truncated file is named before any request: {:?}",
        listed["cut-unet"]
    );
    let expect_load_failure = |messages: &[DaemonMessage], file: &str| match messages.last() {
        Some(DaemonMessage::Error(e)) => {
            assert_eq!(e.code, ErrorCode::ModelLoadFailed, "{e}");
            assert!(e.message.contains(file), "names {file}: {e}");
        }
        other => panic!("expected ModelLoadFailed, got {other:?}"),
    };
    expect_load_failure(
        &run(&mut client, named(txt2img(1, 64, 2), "cut-unet")),
        "unet",
    );

    // A load that fails on first use: its waiting jobs hear it loading, then fail; a job on the
    // good model sent behind it is answered.
    client.send(&ClientMessage::Generate(named(
        txt2img(2, 64, 2),
        "bad-tokenizer",
    )));
    client.send(&ClientMessage::Generate(named(
        txt2img(3, 64, 2),
        "tiny-lcm",
    )));
    let mut others = Vec::new();
    let failed = client.until_final(2, &mut others);
    assert!(
        failed
            .iter()
            .any(|m| matches!(m, DaemonMessage::ModelLoading { .. })),
        "progress before the failure: {failed:?}"
    );
    expect_load_failure(&failed, "vocab.json");
    let mut good_answer: Vec<DaemonMessage> = others
        .into_iter()
        .filter(|m| m.request_id() == Some(3))
        .collect();
    if !good_answer.last().is_some_and(is_final) {
        good_answer.extend(client.until_final(3, &mut Vec::new()));
    }
    assert_eq!(result_of(&good_answer).0, "tiny-lcm");
    let listed = by_name(&list_models(&mut client));
    assert!(listed["bad-tokenizer"].load_error.contains("vocab.json"));
    assert!(!listed["bad-tokenizer"].loaded);
    // The next request tries again (the artist may have fixed the file) and fails the same way.
    expect_load_failure(
        &run(&mut client, named(txt2img(4, 64, 2), "bad-tokenizer")),
        "vocab.json",
    );
    assert!(
        daemon
            .log_text()
            .contains("the daemon keeps serving the others")
    );
}

#[test]
fn a_daemon_whose_first_model_is_broken_serves_the_next() {
    let dir = temp_dir("first-bad-src");
    let bad_tokenizer = fixture_copy("tiny-sd", &dir, "bad-first");
    std::fs::write(bad_tokenizer.join("tokenizer/vocab.json"), b"[").unwrap();
    let good = fixture("tiny-sd");
    let daemon = start("first-bad", &[&bad_tokenizer, &good], &[]);
    let (mut client, hello) = daemon.client("first-bad");
    assert_eq!(
        hello.model, "tiny-sd",
        "the first model that loads is the default"
    );
    let (model, _) = result_of(&run(&mut client, txt2img(1, 64, 2)));
    assert_eq!(model, "tiny-sd");
    let listed = by_name(&list_models(&mut client));
    assert!(listed["bad-first"].load_error.contains("vocab.json"));
}
