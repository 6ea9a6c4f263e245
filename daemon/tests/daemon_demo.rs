//! `livefill demo` end to end: an in-process daemon on the bundled smoke model, a client over
//! the real socket, an inpainted PNG on disk. CPU only.

#![cfg(unix)]

mod daemon_support;

use daemon_support::*;

#[test]
fn demo_writes_the_composited_picture() {
    let dir = temp_dir("demo");
    let out_png = dir.join("demo.png");
    let output = livefill_command()
        .args(["demo", "--device", "cpu", "--threads", "1", "--out"])
        .arg(&out_png)
        .arg("--socket")
        .arg(dir.join("run").join("demo.sock"))
        .env("LIVEFILL_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "connected: model tiny-sd",
        "step 4/4",
        "round trip",
        "wrote ",
        "daemon stopped",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let image = image::open(&out_png).unwrap().to_rgba8();
    assert_eq!(image.dimensions(), livefill::cli::demo::DEMO_SIZE);
    // Outside the mask the picture is the input, bit for bit.
    let (input, mask) = livefill::cli::demo::demo_picture();
    let mut changed_inside = 0;
    for (i, px) in image.pixels().enumerate() {
        let original = &input.pixels[i * 4..i * 4 + 4];
        if mask.pixels[i] == 0 {
            // Feathering may touch pixels just outside the mask edge; far outside is untouched.
            let (x, y) = (
                (i as u32 % input.width) as f32,
                (i as u32 / input.width) as f32,
            );
            let (dx, dy) = ((x - 150.0) / 62.0, (y - 118.0) / 44.0);
            if dx * dx + dy * dy > 1.6 {
                assert_eq!(&px.0[..], original, "pixel {i} outside the mask changed");
            }
        } else if &px.0[..] != original {
            changed_inside += 1;
        }
    }
    assert!(changed_inside > 1000, "the masked area was regenerated");
    // The socket is gone with the daemon.
    assert!(!dir.join("run").join("demo.sock").exists());
    let _ = std::fs::remove_dir_all(dir);
}
