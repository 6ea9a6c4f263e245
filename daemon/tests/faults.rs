//! Faults outside the daemon's control, each a clear error naming what to do: a missing or wrong
//! ONNX Runtime library, a cache folder that cannot be written, a model whose only file is
//! truncated. (A full disk during `models fetch` is in `models_fetch.rs`; a model failing among
//! good ones, SIGTERM and out-of-memory are in `daemon_models.rs` / `daemon_reliability.rs`.)

mod daemon_support;

use std::path::Path;
use std::process::Output;

use daemon_support::*;

fn serve(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let dir = temp_dir("faults");
    let socket = dir.join("livefill.sock");
    let mut cmd = livefill_command();
    cmd.arg("serve")
        .arg("--socket")
        .arg(&socket)
        .args(["--device", "cpu", "--threads", "1"])
        .args(args)
        .env("XDG_CONFIG_HOME", dir.join("no-config"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run livefill serve");
    assert!(!socket.exists(), "no socket left behind");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_missing_or_wrong_onnx_runtime_library_is_named_with_the_fix() {
    let model = fixture("tiny-sd");
    let model = model.to_str().unwrap();
    let dir = temp_dir("ort");
    let garbage = dir.join("libonnxruntime.so.1.31.1");
    std::fs::write(&garbage, b"not a shared library").unwrap();
    let missing = dir.join("nowhere/libonnxruntime.so");
    for (lib, why) in [
        (&missing, "the file does not exist"),
        (&garbage, "file too short"),
    ] {
        let out = serve(&["--model", model, "--ort-lib", lib.to_str().unwrap()], &[]);
        let text = stderr(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains(&lib.display().to_string()),
            "names the library: {text}"
        );
        assert!(text.contains(why), "says why ({why}): {text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "says what to do: {text}");
        assert!(
            !text.contains("no model could be loaded"),
            "a runtime problem, not a model one: {text}"
        );
    }
}

#[test]
fn a_cache_folder_that_cannot_be_written_is_named() {
    let dir = temp_dir("cache");
    // A file where the cache folder would be: creating it fails (even for root).
    let blocker = dir.join("cache-is-a-file");
    std::fs::write(&blocker, b"").unwrap();
    let model = fixture("tiny-sd");
    let mut cmd = livefill_command();
    cmd.env_remove("ORT_DYLIB_PATH");
    let out = {
        let socket = dir.join("livefill.sock");
        cmd.arg("serve")
            .arg("--model")
            .arg(&model)
            .arg("--socket")
            .arg(&socket)
            .args(["--device", "cpu"])
            .env("XDG_CACHE_HOME", &blocker)
            .env("HOME", &blocker)
            .env("XDG_CONFIG_HOME", dir.join("no-config"))
            .output()
            .unwrap()
    };
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&blocker.display().to_string()),
        "names the folder: {text}"
    );
    assert!(text.contains("Not a directory"), "{text}");
    assert!(text.contains("ORT_DYLIB_PATH"), "says what to do: {text}");
}

#[test]
fn a_truncated_model_file_is_named_and_the_daemon_does_not_start_on_it() {
    let dir = temp_dir("truncated");
    let model = dir.join("cut");
    copy_dir(&fixture("tiny-sd"), &model);
    let unet = model.join("unet/model.onnx");
    let bytes = std::fs::read(&unet).unwrap();
    std::fs::write(&unet, &bytes[..bytes.len() / 3]).unwrap();
    let out = serve(&["--model", model.to_str().unwrap()], &[]);
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("unet/model.onnx"), "names the file: {text}");
    assert!(text.contains("no model could be loaded"), "{text}");
}
