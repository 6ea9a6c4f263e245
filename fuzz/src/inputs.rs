//! The targets for files and text users hand to livefill: the ONNX header reader (model files
//! people download), the `.npy` reader (`generate --noise`), the config file parser and the
//! tokenizer (any prompt a plugin sends).
//!
//! Exists beside the frame and request targets because these parsers read what is on disk or
//! typed, not what arrives on the socket; each body checks what an accepted input promises.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use livefill::config::{self, ConfigError};
use livefill::onnx::configs::UnetConfig;
use livefill::onnx::{contract, header};
use livefill::paths::MapEnv;
use livefill::tokenizer::{ClipTokenizer, MAX_LENGTH};

/// `read_signature_from` over the bytes, then every graph contract check on what it declares.
pub fn onnx_header(data: &[u8]) {
    let path = Path::new("fuzz/model.onnx");
    let Ok(signature) = header::read_signature_from(Cursor::new(data), data.len() as u64, path)
    else {
        return;
    };
    let _ = (signature.input_names(), signature.float_type());
    for spec in signature.inputs.iter().chain(&signature.outputs) {
        let _ = spec.elem_type.map(|t| t.name());
    }
    let _ = contract::check_text_encoder(path, &signature);
    let _ = contract::check_vae_encoder(path, &signature);
    let _ = contract::check_vae_decoder(path, &signature);
    for config in [r#"{}"#, r#"{"in_channels": 9, "time_cond_proj_dim": 256}"#] {
        let config: UnetConfig = serde_json::from_str(config).expect("a UNet config");
        let _ = contract::check_unet(path, &signature, &config);
    }
}

/// `npy::parse_f32`: an accepted array holds exactly as many values as its shape says.
pub fn npy(data: &[u8]) {
    if let Ok(array) = livefill::npy::parse_f32(data) {
        let count = array
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(count, Some(array.data.len()), "shape {:?}", array.shape);
    }
}

/// `config::parse` of the text: accepted paths are all absolute (anchored at `$HOME` or the
/// file's folder); an error names a line and column inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/home/u/.config/livefill/config.toml");
    let env = MapEnv([("HOME", "/h".to_string())].into());
    match config::parse(text, file, &env) {
        Ok(config) => {
            let folders: Vec<PathBuf> = config.model_folders();
            assert!(folders.iter().all(|p| p.is_absolute()), "{folders:?}");
        }
        Err(e) => {
            let message = e.to_string();
            let ConfigError::Parse { line, column, .. } = e else {
                panic!("parsing text gave a non-parse error: {message}");
            };
            let lines = text.split('\n').count();
            assert!(
                line >= 1 && line <= lines,
                "line {line} of {lines}: {message}"
            );
            assert!(column >= 1, "{message}");
        }
    }
}

/// `ClipTokenizer::encode` with the fixture tokenizer: always 77 ids, BOS first, then the
/// prompt's tokens, EOS and padding (EOS or padding last). (`truncated_count` runs the same
/// encoding; it is left out to halve the cost of this slowest target.)
pub fn tokenizer(data: &[u8]) {
    let prompt = String::from_utf8_lossy(data);
    let (tokenizer, specials) = fixture_tokenizer();
    let [bos, eos, pad] = *specials;
    let ids = tokenizer.encode(&prompt).expect("any prompt tokenizes");
    assert_eq!(ids.len(), MAX_LENGTH);
    assert_eq!(ids[0], bos);
    assert!(ids[1..].contains(&eos), "no EOS in {ids:?}");
    assert!(ids.iter().all(|&id| id >= 0));
    assert!(ids[MAX_LENGTH - 1] == pad || ids[MAX_LENGTH - 1] == eos);
}

/// The fixture tokenizer and its BOS, EOS and padding ids (from the empty prompt), loaded once.
fn fixture_tokenizer() -> &'static (ClipTokenizer, [i64; 3]) {
    static TOKENIZER: OnceLock<(ClipTokenizer, [i64; 3])> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sd/tokenizer");
        let tokenizer = ClipTokenizer::from_dir(&dir).expect("the fixture tokenizer loads");
        let empty = tokenizer.encode("").expect("the empty prompt tokenizes");
        let specials = [empty[0], empty[1], empty[MAX_LENGTH - 1]];
        (tokenizer, specials)
    })
}
