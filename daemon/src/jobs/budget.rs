//! How many models may be resident at once: a count, or bytes of weights.
//!
//! Exists so `--max-resident` has one parser and one default. `--max-resident 2` keeps at most two
//! models; `--max-resident 6GiB` (or `6G`, `6000MB`, `512MiB`) keeps models while their weight
//! files add up to at most that; without the flag the budget is derived from the memory free on
//! the device at start (GPU memory from `nvidia-smi` on CUDA, else `MemAvailable` from
//! `/proc/meminfo`), of which [`DERIVED_FRACTION`] goes to weights and the rest is left for
//! activations, ONNX Runtime's arenas and the editor.

use std::fmt;
use std::str::FromStr;

/// The part of the free memory a derived budget gives to model weights.
pub const DERIVED_FRACTION: f64 = 0.6;
/// The budget when free memory cannot be read: two models.
pub const FALLBACK_MODELS: u32 = 2;

/// Limit on resident models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBudget {
    /// At most this many models (at least one).
    Models(u32),
    /// Weight files of resident models add up to at most this many bytes (one model always
    /// fits, however large: a daemon must be able to serve).
    Bytes(u64),
}

impl MemoryBudget {
    /// Whether `models` resident models with `bytes` of weights are within the budget.
    pub fn fits(&self, models: u64, bytes: u64) -> bool {
        if models <= 1 {
            return true;
        }
        match *self {
            MemoryBudget::Models(n) => models <= u64::from(n.max(1)),
            MemoryBudget::Bytes(limit) => bytes <= limit,
        }
    }

    /// A byte budget grown by `bytes` (what is resident already when free memory was read); a
    /// count stays as it is.
    pub fn plus(self, bytes: u64) -> Self {
        match self {
            MemoryBudget::Bytes(b) => MemoryBudget::Bytes(b.saturating_add(bytes)),
            count => count,
        }
    }

    /// `(budget_bytes, max_resident_models)` as `DaemonStatus` carries them (0 = not this kind).
    pub fn wire(&self) -> (u64, u32) {
        match *self {
            MemoryBudget::Models(n) => (0, n),
            MemoryBudget::Bytes(b) => (b, 0),
        }
    }

    /// The budget from free memory: `DERIVED_FRACTION` of `free_bytes`, or
    /// [`FALLBACK_MODELS`] models when it is unknown.
    pub fn derived(free_bytes: Option<u64>) -> Self {
        match free_bytes {
            Some(free) => MemoryBudget::Bytes((free as f64 * DERIVED_FRACTION) as u64),
            None => MemoryBudget::Models(FALLBACK_MODELS),
        }
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryBudget::Models(1) => write!(f, "1 model"),
            MemoryBudget::Models(n) => write!(f, "{n} models"),
            MemoryBudget::Bytes(b) => write!(f, "{:.2} GiB of weights", *b as f64 / GIB),
        }
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// A `--max-resident` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--max-resident {0:?}: give a number of models (e.g. 2) or a size with a unit (e.g. 6GiB, \
     6G, 512MiB)"
)]
pub struct BudgetParseError(String);

impl FromStr for MemoryBudget {
    type Err = BudgetParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BudgetParseError(text.to_string());
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        if unit.is_empty() {
            return match number.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(MemoryBudget::Models(n)),
                _ => Err(bad()),
            };
        }
        let scale: f64 = match unit.as_str() {
            "b" => 1.0,
            "k" | "kb" => 1e3,
            "kib" => 1024.0,
            "m" | "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "g" | "gb" => 1e9,
            "gib" => GIB,
            "t" | "tb" => 1e12,
            "tib" => GIB * 1024.0,
            _ => return Err(bad()),
        };
        let bytes = value * scale;
        if !(bytes.is_finite() && bytes >= 1.0) {
            return Err(bad());
        }
        Ok(MemoryBudget::Bytes(bytes as u64))
    }
}

/// Where the models will live, for `free_device_memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryDevice {
    /// The CUDA device ONNX Runtime was given (its index among the visible devices).
    Gpu(i32),
    Ram,
}

/// Free memory on the device models will live on: the GPU's (CUDA, from `nvidia-smi`) or the
/// machine's RAM (`MemAvailable`). None when it cannot be told.
pub fn free_device_memory(device: MemoryDevice) -> Option<u64> {
    match device {
        MemoryDevice::Gpu(index) => {
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
            let id = nvidia_smi_id(index, visible.as_deref())?;
            query_free_gpu_memory("nvidia-smi".as_ref(), &id)
        }
        MemoryDevice::Ram => mem_available(),
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What `nvidia-smi --id` calls CUDA device `index`. CUDA numbers only the devices
/// `CUDA_VISIBLE_DEVICES` lists, in its order, while `nvidia-smi` ignores that variable and
/// numbers every GPU (or takes a UUID), so the index goes through the list when there is one.
fn nvidia_smi_id(index: i32, cuda_visible_devices: Option<&str>) -> Option<String> {
    let index = usize::try_from(index).ok()?;
    match cuda_visible_devices.map(str::trim) {
        None | Some("") => Some(index.to_string()),
        Some(list) => list
            .split(',')
            .nth(index)
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty()),
    }
}

/// Free memory of GPU `id` from `program` (`nvidia-smi`), in bytes; None when it is missing,
/// fails, or prints something else than a number of MiB (`[N/A]` on some virtual GPUs).
fn query_free_gpu_memory(program: &std::ffi::OsStr, id: &str) -> Option<u64> {
    let out = std::process::Command::new(program)
        .arg(format!("--id={id}"))
        .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_free_mib(&String::from_utf8_lossy(&out.stdout))
}

fn parse_free_mib(csv: &str) -> Option<u64> {
    let mib: u64 = csv.lines().next()?.trim().parse().ok()?;
    mib.checked_mul(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_sizes() {
        assert_eq!("2".parse(), Ok(MemoryBudget::Models(2)));
        assert_eq!("6GiB".parse(), Ok(MemoryBudget::Bytes(6 << 30)));
        assert_eq!("6G".parse(), Ok(MemoryBudget::Bytes(6_000_000_000)));
        assert_eq!(" 512 MiB ".parse(), Ok(MemoryBudget::Bytes(512 << 20)));
        assert_eq!("1.5gb".parse(), Ok(MemoryBudget::Bytes(1_500_000_000)));
        for bad in ["0", "", "two", "6 parsecs", "-1", "1.5"] {
            assert!(bad.parse::<MemoryBudget>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_model_always_fits() {
        assert!(MemoryBudget::Bytes(1).fits(1, 10 << 30));
        assert!(!MemoryBudget::Bytes(1).fits(2, 2));
        assert!(MemoryBudget::Models(2).fits(2, u64::MAX));
        assert!(!MemoryBudget::Models(2).fits(3, 0));
        assert!(MemoryBudget::Bytes(100).fits(2, 100));
    }

    #[test]
    fn derived_budget() {
        let info = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(info), Some(20_000_000 * 1024));
        assert_eq!(
            MemoryBudget::derived(Some(10_000)),
            MemoryBudget::Bytes(6_000)
        );
        assert_eq!(MemoryBudget::derived(None), MemoryBudget::Models(2));
    }

    #[test]
    fn the_cuda_index_goes_through_cuda_visible_devices() {
        assert_eq!(nvidia_smi_id(0, None).as_deref(), Some("0"));
        assert_eq!(nvidia_smi_id(1, Some("")).as_deref(), Some("1"));
        assert_eq!(nvidia_smi_id(1, Some("2, 3")).as_deref(), Some("3"));
        assert_eq!(
            nvidia_smi_id(0, Some("GPU-8f6c2a1e-0000")).as_deref(),
            Some("GPU-8f6c2a1e-0000")
        );
        assert_eq!(nvidia_smi_id(2, Some("2,3")), None);
        assert_eq!(nvidia_smi_id(-1, None), None);
    }

    #[test]
    fn nvidia_smi_output() {
        assert_eq!(parse_free_mib("81050\n"), Some(81050 << 20));
        assert_eq!(parse_free_mib(" 40000 \n 39000\n"), Some(40000 << 20));
        assert_eq!(parse_free_mib("[N/A]\n"), None);
        assert_eq!(parse_free_mib(""), None);
    }

    /// A stand-in `nvidia-smi` that prints its arguments' GPU id as free MiB, or fails.
    #[test]
    fn queries_the_named_gpu_and_survives_a_failing_nvidia_smi() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("livefill-nvidia-smi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("nvidia-smi");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$1\" in --id=3) echo 12000 ;; --id=9) echo 'No devices were found'; exit 6 ;; *) exit 2 ;; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            query_free_gpu_memory(fake.as_os_str(), "3"),
            Some(12000 << 20)
        );
        assert_eq!(query_free_gpu_memory(fake.as_os_str(), "9"), None);
        let missing = dir.join("no-such-program");
        assert_eq!(query_free_gpu_memory(missing.as_os_str(), "0"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
