//! `livefill generate --socket` / `--daemon` and `livefill status` against the real daemon:
//! the daemon's result is the in-process run's, byte for byte, for the same seed and flags; the
//! model that served is printed; unknown models, missing daemons, flags a daemon decides and the
//! daemon's own refusals are errors that say so; `status` lists the daemon's models. Runs the
//! real binary on the tiny fixture model, CPU only.

#![cfg(unix)]

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use daemon_support::*;

/// Runs `livefill ARGS`.
fn livefill(args: &[&str]) -> Output {
    livefill_command()
        .args(args)
        .env("LIVEFILL_LOG", "warn")
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `livefill ARGS`, asserts it succeeded and returns its stdout and stderr.
fn livefill_ok(args: &[&str]) -> (String, String) {
    let output = livefill(args);
    let (out, err) = text(&output);
    assert!(
        output.status.success(),
        "livefill {args:?} failed:\n{out}\n{err}"
    );
    (out, err)
}

/// Runs `livefill ARGS`, asserts it failed and returns its stderr.
fn livefill_err(args: &[&str]) -> String {
    let output = livefill(args);
    let (out, err) = text(&output);
    assert!(
        !output.status.success(),
        "livefill {args:?} succeeded:\n{out}\n{err}"
    );
    err
}

/// A 96×80 gradient picture and a mask over its middle, as PNG files in `dir`.
fn picture(dir: &Path) -> (PathBuf, PathBuf) {
    let request = inpaint(0, 96, 80);
    let image = request.image.unwrap();
    let mask = request.mask.unwrap();
    let image_png = dir.join("in.png");
    let mask_png = dir.join("mask.png");
    image::RgbaImage::from_raw(image.width, image.height, image.pixels)
        .unwrap()
        .save(&image_png)
        .unwrap();
    image::GrayImage::from_raw(mask.width, mask.height, mask.pixels)
        .unwrap()
        .save(&mask_png)
        .unwrap();
    (image_png, mask_png)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The line `generate` prints after `sampler:` on stderr.
fn sampler_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("sampler: "))
        .unwrap_or_else(|| panic!("no sampler line in:\n{stderr}"))
}

#[test]
fn generate_through_the_daemon_gives_the_in_process_bytes() {
    let daemon = Daemon::start("tiny-sd");
    let dir = temp_dir("remote-gen");
    let (image, mask) = picture(&dir);
    let model = fixture("tiny-sd");
    let cases: [&[&str]; 2] = [
        &[
            "--mode",
            "inpaint",
            "--image",
            s(&image),
            "--mask",
            s(&mask),
            "--prompt",
            "a door",
        ],
        &[
            "--mode",
            "txt2img",
            "--prompt",
            "a barn",
            "--sampler",
            "euler_a",
            "--steps",
            "3",
        ],
    ];
    for (i, flags) in cases.iter().enumerate() {
        let local_png = dir.join(format!("local-{i}.png"));
        let remote_png = dir.join(format!("remote-{i}.png"));
        let common = [&["generate", "--seed", "11"][..], flags].concat();
        let local = [
            &common[..],
            &["--model", s(&model), "--device", "cpu", "--threads", "1"],
            &["--out", s(&local_png)],
        ]
        .concat();
        let remote = [
            &common[..],
            &["--socket", s(&daemon.socket), "--out", s(&remote_png)],
        ]
        .concat();
        let (local_out, local_err) = livefill_ok(&local);
        let (remote_out, remote_err) = livefill_ok(&remote);
        assert_eq!(
            sampler_line(&local_err),
            sampler_line(&remote_err),
            "the daemon's defaults differ from the model folder's"
        );
        for out in [&local_out, &remote_out] {
            assert!(out.contains("seed 11, model tiny-sd;"), "{out}");
        }
        let steps = if i == 0 { "step 4/4" } else { "step 3/3" };
        assert!(remote_err.contains(steps), "no {steps:?} in:\n{remote_err}");
        let (local_bytes, remote_bytes) = (
            std::fs::read(&local_png).unwrap(),
            std::fs::read(&remote_png).unwrap(),
        );
        assert!(
            local_bytes == remote_bytes,
            "case {i}: the daemon's PNG differs from the in-process one"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn generate_names_the_model_and_refuses_what_the_daemon_cannot_do() {
    let daemon = Daemon::start("tiny-sd");
    let dir = temp_dir("remote-model");
    let out_png = dir.join("out.png");
    let base = [
        "generate", "--mode", "txt2img", "--steps", "1", "--seed", "3",
    ];
    let out = s(&out_png);
    let socket = s(&daemon.socket);
    let args =
        |extra: &[&'static str]| [&base[..], &["--socket", socket, "--out", out], extra].concat();

    let (stdout, _) = livefill_ok(&args(&["--model", "tiny-sd"]));
    assert!(stdout.contains("model tiny-sd;"), "{stdout}");

    let err = livefill_err(&args(&["--model", "nope"]));
    assert!(err.contains("serves no model \"nope\""), "{err}");
    assert!(err.contains("it serves: tiny-sd"), "{err}");

    // The daemon's own refusal, with its code.
    let err = livefill_err(&args(&["--guidance", "99"]));
    assert!(err.contains("invalid_request"), "{err}");
    assert!(err.contains("guidance"), "{err}");

    // --daemon: the default socket, here through LIVEFILL_SOCKET.
    let output = livefill_command()
        .args(base)
        .args(["--daemon", "--out", out])
        .env("LIVEFILL_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    let (out, err) = text(&output);
    assert!(output.status.success(), "{out}\n{err}");
    assert!(out.contains("model tiny-sd;"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn generate_without_a_daemon_or_with_in_process_flags_says_why() {
    let dir = temp_dir("remote-none");
    let socket = dir.join("nobody.sock");
    let base = [
        "generate",
        "--mode",
        "txt2img",
        "--out",
        "unused.png",
        "--socket",
        s(&socket),
    ];
    let err = livefill_err(&base);
    assert!(
        err.contains(&format!(
            "no daemon on {}: start it with `livefill serve`",
            socket.display()
        )),
        "{err}"
    );
    let err = livefill_err(&[&base[..], &["--device", "cpu", "--threads", "2"]].concat());
    assert!(
        err.contains("--device, --threads choose how this process runs"),
        "{err}"
    );
    let err = livefill_err(&[&base[..], &["--noise", "n.npy"]].concat());
    assert!(err.contains("--noise works in process only"), "{err}");
    let err = livefill_err(&["generate", "--mode", "txt2img", "--out", "unused.png"]);
    assert!(err.contains("--model"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn status_lists_the_daemon_s_models_and_residency() {
    let daemon = Daemon::start("tiny-sd");
    let dir = temp_dir("remote-status");
    let out_png = dir.join("out.png");
    // A job first, so the model is resident however the daemon loads its models.
    livefill_ok(&[
        "generate",
        "--mode",
        "txt2img",
        "--steps",
        "1",
        "--socket",
        s(&daemon.socket),
        "--out",
        s(&out_png),
    ]);
    let (out, _) = livefill_ok(&["status", "--socket", s(&daemon.socket)]);
    for needle in [
        "model:           tiny-sd",
        "jobs done:       1",
        "resident:        ",
        " budget, 1 model",
        "loading now:     none",
        "models (1):",
        "  tiny-sd [resident]",
        "    kind:        4-ch UNet, plain or LCM-LoRA fused, fp32, TAESD",
        "    weights:     ",
        "    roles:       ",
        "    path:        ",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains("load failed"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
