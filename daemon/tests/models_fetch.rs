//! `models fetch` against a stand-in Hugging Face hub on 127.0.0.1.
//!
//! The server imitates the endpoints `hf-hub` calls: `GET /api/models/{repo}/revision/{rev}`
//! (file listing with `?blobs=true` metadata: size, git blob id, LFS sha256) and
//! `GET /{repo}/resolve/{rev}/{file}` — small files answered directly with `ETag` +
//! `X-Repo-Commit`, `.onnx` files (LFS on the real hub) redirected to a "CDN" path with
//! `X-Linked-Etag` = sha256, as the hub does; every file honours `Range` (206 + `Content-Range`).
//! It serves `tests/fixtures/tiny-sd`, plus files the layout must skip. The fetched snapshot must
//! open with `ModelDir::open` and load with `Engine::load`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use livefill::engine::{Engine, EngineOptions};
use livefill::models::hub::{self, FetchOptions, git_blob_id};
use livefill::models::locate;
use livefill::onnx::model_dir::ModelDir;
use livefill::onnx::runtime::{DeviceRequest, RuntimeOptions};
use livefill::paths::MapEnv;

const REPO: &str = "livefill-test/tiny-sd-onnx";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sd")
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "livefill-models-fetch-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One served file.
#[derive(Clone)]
struct RepoFile {
    bytes: Vec<u8>,
    lfs: bool,
}

#[derive(Default)]
struct HubState {
    /// The repo id it serves.
    repo: String,
    files: Vec<(String, RepoFile)>,
    /// Paths requested (request line target), in order.
    log: Vec<String>,
    /// `(file, range header)` of every content request.
    ranges: Vec<(String, Option<String>)>,
    /// Files whose served bytes get one byte flipped (the listing keeps the true checksum).
    corrupt: Vec<String>,
}

struct StandInHub {
    url: String,
    state: Arc<Mutex<HubState>>,
}

impl StandInHub {
    /// Serves the tiny-sd fixture as `REPO`.
    fn start() -> Self {
        let mut files = Vec::new();
        collect(&fixture(), "", &mut files);
        Self::serving(REPO, files)
    }

    /// Serves `files` as `repo`, plus files a real repo has that livefill must not download.
    fn serving(repo: &str, mut files: Vec<(String, RepoFile)>) -> Self {
        // Files a real repo has that livefill must not download.
        files.push((
            "unet/diffusion_pytorch_model.safetensors".into(),
            RepoFile {
                bytes: vec![1; 4096],
                lfs: true,
            },
        ));
        files.push((
            "README.md".into(),
            RepoFile {
                bytes: b"# tiny\n".to_vec(),
                lfs: false,
            },
        ));
        files.push((
            "safety_checker/model.onnx".into(),
            RepoFile {
                bytes: vec![2; 100],
                lfs: true,
            },
        ));
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let state = Arc::new(Mutex::new(HubState {
            repo: repo.to_string(),
            files,
            ..Default::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (st, base) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, base) = (st.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &st, &base);
                });
            }
        });
        Self { url, state }
    }
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, RepoFile)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            collect(&e.path(), &format!("{name}/"), out);
        } else {
            out.push((
                name.clone(),
                RepoFile {
                    bytes: std::fs::read(e.path()).unwrap(),
                    lfs: name.ends_with(".onnx"),
                },
            ));
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn serve(mut stream: TcpStream, state: &Mutex<HubState>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let mut st = state.lock().unwrap();
    st.log.push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let repo = st.repo.clone();
    let api_prefix = format!("/api/models/{repo}/revision/");
    let resolve_prefix = format!("/{repo}/resolve/");
    if let Some(rev) = path.strip_prefix(&api_prefix) {
        assert_eq!(rev, "main");
        let blobs = query.contains("blobs=true");
        let siblings: Vec<serde_json::Value> = st
            .files
            .iter()
            .map(|(name, f)| {
                let mut s = serde_json::json!({ "rfilename": name });
                if blobs {
                    s["size"] = f.bytes.len().into();
                    s["blobId"] = git_blob_id(&f.bytes).into();
                    if f.lfs {
                        s["lfs"] = serde_json::json!({
                            "sha256": sha256_hex(&f.bytes),
                            "size": f.bytes.len(),
                            "pointerSize": 130,
                        });
                    }
                }
                s
            })
            .collect();
        let body = serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings });
        drop(st);
        respond(
            &mut stream,
            "200 OK",
            &[("Content-Type".into(), "application/json".into())],
            body.to_string().as_bytes(),
        );
        return Ok(());
    }
    let (name, via_cdn) = if let Some(rest) = path.strip_prefix(&resolve_prefix) {
        let (rev, file) = rest.split_once('/').unwrap();
        assert_eq!(rev, "main");
        (file.to_string(), false)
    } else if let Some(file) = path.strip_prefix("/cdn/") {
        (file.to_string(), true)
    } else {
        drop(st);
        respond(&mut stream, "404 Not Found", &[], b"not found");
        return Ok(());
    };
    let Some(file) = st
        .files
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f.clone())
    else {
        drop(st);
        respond(&mut stream, "404 Not Found", &[], b"no such file");
        return Ok(());
    };
    let mut bytes = file.bytes.clone();
    if st.corrupt.contains(&name) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
    }
    let sha = sha256_hex(&file.bytes);
    if file.lfs && !via_cdn {
        // The hub: LFS files redirect to the CDN, metadata in X-Linked-* headers.
        drop(st);
        respond(
            &mut stream,
            "302 Found",
            &[
                ("Location".into(), format!("{base}/cdn/{name}")),
                ("X-Repo-Commit".into(), COMMIT.into()),
                ("X-Linked-Etag".into(), format!("\"{sha}\"")),
                ("X-Linked-Size".into(), file.bytes.len().to_string()),
                ("ETag".into(), format!("\"{}\"", git_blob_id(b"pointer"))),
            ],
            b"",
        );
        return Ok(());
    }
    st.ranges.push((name.clone(), range.clone()));
    drop(st);
    let total = bytes.len();
    let mut headers = vec![
        ("X-Repo-Commit".to_string(), COMMIT.to_string()),
        (
            "ETag".to_string(),
            format!(
                "\"{}\"",
                if file.lfs {
                    sha
                } else {
                    git_blob_id(&file.bytes)
                }
            ),
        ),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
    ];
    match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap();
            let start: usize = a.parse().unwrap();
            let end: usize = if b.is_empty() {
                total - 1
            } else {
                b.parse::<usize>().unwrap().min(total - 1)
            };
            if start >= total {
                headers.push(("Content-Range".into(), format!("bytes */{total}")));
                respond(&mut stream, "416 Range Not Satisfiable", &headers, b"");
            } else {
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{end}/{total}"),
                ));
                respond(
                    &mut stream,
                    "206 Partial Content",
                    &headers,
                    &bytes[start..=end],
                );
            }
        }
        None => respond(&mut stream, "200 OK", &headers, &bytes),
    }
    Ok(())
}

fn options(hub: &StandInHub, home: &Path) -> FetchOptions {
    // HF_ENDPOINT and HF_HOME as a user would set them.
    let env = MapEnv(HashMap::from([
        ("HF_ENDPOINT", hub.url.clone()),
        ("HF_HOME", home.join("hf").display().to_string()),
        ("HOME", home.display().to_string()),
    ]));
    let mut o = FetchOptions::from_env(REPO, "main", &env).unwrap();
    o.progress = false;
    assert_eq!(o.endpoint, hub.url);
    assert_eq!(o.cache, home.join("hf").join("hub"));
    o
}

fn expected_files() -> Vec<String> {
    let mut all = Vec::new();
    collect(&fixture(), "", &mut all);
    let mut names: Vec<String> = all.into_iter().map(|(n, _)| n).collect();
    names.sort();
    names
}

#[test]
fn fetches_verifies_resumes_and_loads() {
    let hub = StandInHub::start();
    let home = temp_dir("main");
    let o = options(&hub, &home);

    // An interrupted earlier run left half of the UNet as a .part blob: it must be resumed.
    let unet = std::fs::read(fixture().join("unet/model.onnx")).unwrap();
    let blobs = o
        .cache
        .join("models--livefill-test--tiny-sd-onnx")
        .join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = unet.len() / 2;
    std::fs::write(
        blobs.join(format!("{}.part", sha256_hex(&unet))),
        &unet[..half],
    )
    .unwrap();

    let fetched = hub::fetch(&o).expect("fetch from the stand-in hub");
    let snapshot = o
        .cache
        .join("models--livefill-test--tiny-sd-onnx/snapshots")
        .join(COMMIT);
    assert_eq!(fetched.model_dir, snapshot);
    assert_eq!(fetched.commit, COMMIT);
    let want = expected_files();
    assert_eq!(fetched.files, want.len());
    assert_eq!(fetched.downloaded, want.len());
    for f in &want {
        let got = std::fs::read(snapshot.join(f)).unwrap();
        assert_eq!(got, std::fs::read(fixture().join(f)).unwrap(), "{f}");
    }
    // refs/main points at the commit, like huggingface_hub's cache.
    assert_eq!(
        std::fs::read_to_string(
            o.cache
                .join("models--livefill-test--tiny-sd-onnx/refs/main")
        )
        .unwrap(),
        COMMIT
    );

    {
        let st = hub.state.lock().unwrap();
        // Only the layout's files were requested.
        for skipped in [
            "diffusion_pytorch_model.safetensors",
            "README.md",
            "safety_checker",
        ] {
            assert!(
                !st.log.iter().any(|t| t.contains(skipped)),
                "{skipped} was requested: {:?}",
                st.log
            );
        }
        // The listing asked for checksums.
        assert!(
            st.log
                .iter()
                .any(|t| t.contains("/api/models/") && t.contains("blobs=true"))
        );
        // The UNet download resumed at the .part length.
        let resumed = format!("bytes={half}-");
        assert!(
            st.ranges
                .iter()
                .any(|(n, r)| n == "unet/model.onnx" && r.as_deref() == Some(resumed.as_str())),
            "no resumed range request for the UNet: {:?}",
            st.ranges
        );
    }

    // The folder is a model: it opens, is described, and loads in ONNX Runtime.
    let dir = ModelDir::open(&fetched.model_dir).expect("ModelDir::open on the snapshot");
    assert!(!dir.is_inpainting_unet());
    let summary = livefill::models::inspect::inspect(&fetched.model_dir).unwrap();
    assert_eq!(summary.unet_in_channels, 4);
    assert_eq!(summary.dtype, "fp32");
    Engine::load(&EngineOptions {
        model: fetched.model_dir.clone(),
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            intra_threads: Some(1),
            ..Default::default()
        },
        max_image_side: 1024,
    })
    .expect("the fetched model loads");

    // `models list` finds it in the HF cache.
    let env = MapEnv(HashMap::from([
        ("HF_HOME", home.join("hf").display().to_string()),
        ("HOME", home.display().to_string()),
    ]));
    let found = locate::all_candidates(&[], &env).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, snapshot);
    match &found[0].origin {
        locate::Origin::HubCache {
            repo_id,
            commit,
            refs,
        } => {
            assert_eq!(repo_id, REPO);
            assert_eq!(commit, COMMIT);
            assert_eq!(refs, &vec!["main".to_string()]);
        }
        other => panic!("{other:?}"),
    }

    // A second fetch re-verifies and downloads nothing.
    let n_requests = hub.state.lock().unwrap().ranges.len();
    let again = hub::fetch(&o).unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(hub.state.lock().unwrap().ranges.len(), n_requests);

    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn corrupted_download_is_rejected_and_removed() {
    let hub = StandInHub::start();
    hub.state
        .lock()
        .unwrap()
        .corrupt
        .push("vae_decoder/model.onnx".into());
    let home = temp_dir("corrupt");
    let o = options(&hub, &home);
    let err = format!("{:#}", hub::fetch(&o).unwrap_err());
    assert!(
        err.contains("vae_decoder/model.onnx") && err.contains("sha256"),
        "{err}"
    );
    let entry = o
        .cache
        .join("models--livefill-test--tiny-sd-onnx/snapshots")
        .join(COMMIT)
        .join("vae_decoder/model.onnx");
    assert!(!entry.exists(), "the bad file must be removed");
    // Fixed on the server: a rerun gets a good copy.
    hub.state.lock().unwrap().corrupt.clear();
    let fetched = hub::fetch(&o).unwrap();
    ModelDir::open(&fetched.model_dir).unwrap();
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn repo_without_onnx_layout_is_explained() {
    let hub = StandInHub::start();
    hub.state
        .lock()
        .unwrap()
        .files
        .retain(|(n, _)| n != "unet/model.onnx");
    let home = temp_dir("no-onnx");
    let err = format!("{:#}", hub::fetch(&options(&hub, &home)).unwrap_err());
    assert!(
        err.contains("unet/model.onnx") && err.contains("models export"),
        "{err}"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

/// The tiny LCM-distilled fixture in the file layout of the catalog's default model (diffusers'
/// legacy ONNX layout: no component configs, `OnnxRuntimeModel` components, a safety checker and
/// feature extractor that livefill leaves on the hub).
fn default_model_files() -> Vec<(String, RepoFile)> {
    let mut files = Vec::new();
    collect(&fixture().join("../tiny-lcm"), "", &mut files);
    files.retain(|(name, _)| !name.ends_with("/config.json") && name != "model_index.json");
    let ort = serde_json::json!(["diffusers", "OnnxRuntimeModel"]);
    let index = serde_json::json!({
        "_class_name": "OnnxStableDiffusionPipeline",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": ort, "text_encoder": ort, "unet": ort, "vae_decoder": ort,
        "vae_encoder": ort, "scheduler": ["diffusers", "LCMScheduler"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    });
    let small = |bytes: Vec<u8>| RepoFile { bytes, lfs: false };
    files.push((
        "model_index.json".into(),
        small(index.to_string().into_bytes()),
    ));
    files.push((
        "feature_extractor/preprocessor_config.json".into(),
        small(b"{}".to_vec()),
    ));
    files
}

#[test]
fn the_default_model_is_fetched_by_name_and_served() {
    let entry = livefill::models::catalog::default_entry();
    let mut files = default_model_files();
    // The stand-in has what the entry lists, except that the tiny fixture tokenizes from
    // tokenizer.json: serve the entry's vocab/merges names from the tiny-sd fixture.
    for name in ["tokenizer/vocab.json", "tokenizer/merges.txt"] {
        let bytes = std::fs::read(fixture().join(name)).unwrap();
        files.push((name.into(), RepoFile { bytes, lfs: false }));
    }
    for needed in entry.files {
        assert!(
            files.iter().any(|(n, _)| n == needed),
            "stand-in lacks {needed}"
        );
    }
    let hub = StandInHub::serving(entry.repo, files);
    let home = temp_dir("default-model");
    let livefill = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_livefill"))
            .args(args)
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_HOME", home.join("hf"))
            .env("HOME", &home)
            .env_remove("HF_HUB_CACHE")
            .current_dir(&home)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "livefill {args:?} failed:\n{text}");
        text
    };
    // No name: the catalog's default, by its repo and revision.
    let fetched = livefill(&["models", "fetch", "--quiet"]);
    assert!(fetched.contains(entry.repo), "{fetched}");
    assert!(
        fetched.contains(&format!("livefill serve --model {}", entry.name)),
        "{fetched}"
    );
    assert!(
        fetched.contains("diffusers legacy ONNX layout"),
        "{fetched}"
    );
    {
        let st = hub.state.lock().unwrap();
        for skipped in ["safety_checker", "feature_extractor", "README.md"] {
            assert!(
                !st.log.iter().any(|t| t.contains(skipped)),
                "{skipped}: {:?}",
                st.log
            );
        }
    }
    // Then the name is a --model: a daemon serves it and answers a request over its socket.
    let demo = livefill(&[
        "demo", "--model", entry.name, "--steps", "2", "--device", "cpu", "--out", "demo.png",
    ]);
    assert!(demo.contains("connected: model"), "{demo}");
    assert!(home.join("demo.png").is_file(), "{demo}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_catalog_name_that_was_not_fetched_says_how_to_fetch_it() {
    let home = temp_dir("not-fetched");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livefill"))
        .args([
            "generate",
            "--model",
            "lcm-dreamshaper-v7",
            "--mode",
            "txt2img",
            "--device",
            "cpu",
            "--out",
            "x.png",
        ])
        .current_dir(&home)
        .env("HF_HOME", home.join("hf"))
        .env("HOME", &home)
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("not downloaded yet: run `livefill models fetch lcm-dreamshaper-v7`"),
        "{text}"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

/// `livefill models fetch` of the stand-in's repo as a separate process, writing at most
/// `file_limit` bytes per file when given (RLIMIT_FSIZE: a disk that fills up mid-download,
/// without needing a small file system).
fn fetch_process(hub: &StandInHub, home: &Path, file_limit: Option<u64>) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_livefill"));
    cmd.args(["models", "fetch", REPO, "--quiet"])
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HOME", home.join("hf"))
        .env("HOME", home)
        .env_remove("HF_HUB_CACHE");
    if let Some(limit) = file_limit {
        // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let cap = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &cap) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Past the limit a write fails with EFBIG instead of killing the process.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    cmd.output().unwrap()
}

#[test]
fn a_disk_that_fills_up_mid_download_is_explained_and_the_rerun_resumes() {
    let hub = StandInHub::start();
    let home = temp_dir("full-disk");
    let failed = fetch_process(&hub, &home, Some(256 << 10));
    let text = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{text}");
    assert!(text.contains("is full"), "says the disk is full: {text}");
    assert!(text.contains("run the same command again"), "{text}");
    println!("full disk: {text}");
    // No incomplete file is in the snapshot: what did not fit is a .part blob only.
    let repo_dir = home.join("hf/hub/models--livefill-test--tiny-sd-onnx");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    let mut snapshot_files = Vec::new();
    collect(&snapshot, "", &mut snapshot_files);
    for (name, _) in &snapshot_files {
        let expected = std::fs::metadata(fixture().join(name)).unwrap().len();
        let got = std::fs::metadata(snapshot.join(name)).unwrap().len();
        assert_eq!(got, expected, "{name} in the snapshot is complete");
    }
    assert!(
        snapshot_files.len() < expected_files().len(),
        "the limit stopped the fetch"
    );
    let parts = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "part")
        })
        .count();
    assert_eq!(
        parts, 1,
        "the file that did not fit is kept as a .part blob"
    );

    let again = fetch_process(&hub, &home, None);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let dir = ModelDir::open(&snapshot).expect("the resumed snapshot opens");
    assert_eq!(dir.root, snapshot);
    for name in expected_files() {
        let want = std::fs::read(fixture().join(&name)).unwrap();
        let got = std::fs::read(snapshot.join(&name)).unwrap();
        assert!(want == got, "{name} identical after the resumed fetch");
    }
    std::fs::remove_dir_all(&home).unwrap();
}
