//! The models one daemon serves: which are resident, which load, which one a request gets.
//!
//! Exists because an artist uses several checkpoints (an inpainting model for Fill, an LCM model
//! for Live, fine-tunes for style) and the device holds only so many. [`ModelSet`] keeps the
//! catalog (every model the daemon was given, resident or not), resolves a request's model (its
//! name, or the model for its role: [`ModelSet::resolve`]), keeps resident models within a
//! [`MemoryBudget`] by unloading the least recently used one that no job is using, and loads
//! models on a thread of their own so that jobs on resident models go on meanwhile. Loading
//! reports each component to the jobs waiting for the model (`ModelLoading`) and a failure fails
//! exactly those jobs (`ModelLoadFailed`, naming the file); the next request for that model tries
//! again.
//!
//! Locking: the queue may call [`ModelSet::acquire`] while holding its own lock; this module
//! never calls into the queue while holding its lock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};

use livefill_protocol::{
    DaemonMessage, ErrorCode, GenerateRequest, Mode, ModelInfo, ModelRole, Priority, Sampler,
};

use super::JobQueue;
use super::budget::MemoryBudget;
use crate::generator::{GeneratorInfo, GeneratorLoader, ImageGenerator, LoadStep};

/// A resident model, shared by the set and the job running on it.
pub type SharedGenerator = Arc<Mutex<Box<dyn ImageGenerator>>>;

/// One model the daemon serves.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The name requests use (unique in the set).
    pub name: String,
    pub path: PathBuf,
    /// What it can do, read from its folder without loading it; `None` when the folder did not
    /// check out (then `problem` says why).
    pub info: Option<GeneratorInfo>,
    /// Its `ListModels` description (`loaded`, `roles`, `shared_bytes`, `load_error` are filled
    /// in live).
    pub listing: ModelInfo,
    /// Bytes of its weight files: what it costs against a byte budget.
    pub weight_bytes: u64,
    /// Why the folder cannot be served, found before any load (missing or truncated graph).
    pub problem: Option<String>,
}

impl ModelEntry {
    fn can_serve(&self, role: ModelRole) -> bool {
        let Some(info) = &self.info else {
            return false;
        };
        match role {
            ModelRole::Default => true,
            ModelRole::Inpaint => info.inpainting_unet && info.modes.contains(&Mode::Inpaint),
            // An inpainting UNet's img2img is a whole-image inpaint: Live wants a plain one.
            ModelRole::Live => {
                info.sampling.choice.sampler == Sampler::Lcm
                    && info.modes.contains(&Mode::Img2Img)
                    && !info.inpainting_unet
            }
        }
    }
}

/// The role a request without a model name is served by.
pub fn role_of(request: &GenerateRequest) -> ModelRole {
    if request.priority == Priority::LivePreview {
        ModelRole::Live
    } else if matches!(request.mode, Mode::Inpaint | Mode::Outpaint) {
        ModelRole::Inpaint
    } else {
        ModelRole::Default
    }
}

/// What a daemon starts with: the catalog, the default model (already loaded), the budget and
/// the loader for the rest.
pub struct Catalog {
    pub entries: Vec<ModelEntry>,
    /// Index into `entries` of the default model.
    pub default: usize,
    /// The default model, loaded and warmed up before the daemon serves.
    pub default_generator: Box<dyn ImageGenerator>,
    pub budget: MemoryBudget,
    pub loader: Arc<dyn GeneratorLoader>,
}

/// Why a request's model cannot be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("no model named {name:?}: this daemon serves {available}")]
    Unknown { name: String, available: String },
    #[error("model {name:?} cannot be loaded: {problem}")]
    Broken { name: String, problem: String },
}

impl ChoiceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ChoiceError::Unknown { .. } => ErrorCode::NoModel,
            ChoiceError::Broken { .. } => ErrorCode::ModelLoadFailed,
        }
    }
}

/// Residency figures for `DaemonStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residency {
    pub resident_bytes: u64,
    pub budget_bytes: u64,
    pub max_resident_models: u32,
    pub loading_model: String,
}

#[derive(Default)]
struct Slot {
    generator: Option<SharedGenerator>,
    /// Jobs running on it now (never unloaded while > 0).
    pins: u32,
    /// Tick of its last use (least recently used = smallest).
    last_used: u64,
    loading: bool,
    load_error: Option<String>,
}

struct State {
    slots: Vec<Slot>,
    tick: u64,
    /// The model the loader thread is working on.
    loading_now: Option<usize>,
}

struct Inner {
    entries: Vec<ModelEntry>,
    by_name: HashMap<String, usize>,
    default: usize,
    budget: MemoryBudget,
    loader: Arc<dyn GeneratorLoader>,
    state: Mutex<State>,
    load_requests: Mutex<Sender<usize>>,
}

/// Cheap to clone: every clone is the same set.
#[derive(Clone)]
pub struct ModelSet {
    inner: Arc<Inner>,
}

impl ModelSet {
    /// Starts the set's loader thread; its events go to `queue`.
    pub fn start(catalog: Catalog, queue: JobQueue) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let by_name = catalog
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let mut slots: Vec<Slot> = catalog.entries.iter().map(|_| Slot::default()).collect();
        slots[catalog.default].generator = Some(Arc::new(Mutex::new(catalog.default_generator)));
        slots[catalog.default].last_used = 1;
        for (slot, entry) in slots.iter_mut().zip(&catalog.entries) {
            slot.load_error = entry.problem.clone();
        }
        let set = Self {
            inner: Arc::new(Inner {
                entries: catalog.entries,
                by_name,
                default: catalog.default,
                budget: catalog.budget,
                loader: catalog.loader,
                state: Mutex::new(State {
                    slots,
                    tick: 1,
                    loading_now: None,
                }),
                load_requests: Mutex::new(tx),
            }),
        };
        let worker = set.clone();
        std::thread::Builder::new()
            .name("livefill-loader".into())
            .spawn(move || worker.load_loop(rx, queue))?;
        Ok(set)
    }

    /// A set of one resident model and nothing to load (in-process servers, tests).
    pub fn single(generator: Box<dyn ImageGenerator>, queue: JobQueue) -> std::io::Result<Self> {
        let info = generator.info();
        let entry = ModelEntry {
            name: info.model.clone(),
            path: PathBuf::from(&info.model),
            listing: ModelInfo {
                unet_in_channels: if info.inpainting_unet { 9 } else { 4 },
                lcm_distilled: info.sampling.choice.sampler == Sampler::Lcm,
                taesd: info.taesd_previews,
                ..ModelInfo::new(&info.model, "")
            },
            info: Some(info),
            weight_bytes: 0,
            problem: None,
        };
        let catalog = Catalog {
            entries: vec![entry],
            default: 0,
            default_generator: generator,
            budget: MemoryBudget::Models(1),
            loader: Arc::new(NothingToLoad),
        };
        Self::start(catalog, queue)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The default model's name and what it can do (the daemon's hello).
    pub fn default_info(&self) -> GeneratorInfo {
        let entry = &self.inner.entries[self.inner.default];
        entry.info.clone().expect("the default model is loaded")
    }

    /// The model a request runs on: the one it names, else the model for its role (see
    /// [`ModelSet::model_for`]). Returns the entry's name and what it can do.
    pub fn resolve(
        &self,
        request: &GenerateRequest,
    ) -> Result<(String, GeneratorInfo), ChoiceError> {
        let index = if request.model.is_empty() {
            self.model_for(role_of(request))
        } else {
            *self
                .inner
                .by_name
                .get(&request.model)
                .ok_or_else(|| ChoiceError::Unknown {
                    name: request.model.clone(),
                    available: self.names(),
                })?
        };
        let entry = &self.inner.entries[index];
        match (&entry.info, &entry.problem) {
            (Some(info), None) => Ok((entry.name.clone(), info.clone())),
            (_, problem) => Err(ChoiceError::Broken {
                name: entry.name.clone(),
                problem: problem.clone().unwrap_or_default(),
            }),
        }
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.inner.entries.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }

    /// The model serving `role` when a request names none: the default model if it can, else
    /// the first resident one that can, else the first listed one that can (and has not failed
    /// to load), else the default.
    pub fn model_for(&self, role: ModelRole) -> usize {
        let entries = &self.inner.entries;
        let default = self.inner.default;
        if entries[default].can_serve(role) {
            return default;
        }
        let state = self.lock();
        let usable =
            |i: &usize| entries[*i].can_serve(role) && state.slots[*i].load_error.is_none();
        let resident =
            (0..entries.len()).find(|i| usable(i) && state.slots[*i].generator.is_some());
        resident
            .or_else(|| (0..entries.len()).find(usable))
            .unwrap_or(default)
    }

    /// Worker side, called under the queue's lock: when `model` is resident, pins it for one job
    /// and returns true; otherwise asks the loader thread for it (once) and returns false.
    pub fn acquire(&self, model: &str) -> bool {
        let Some(&index) = self.inner.by_name.get(model) else {
            return false;
        };
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        let slot = &mut state.slots[index];
        if slot.generator.is_some() {
            slot.pins += 1;
            slot.last_used = tick;
            return true;
        }
        if !slot.loading {
            slot.loading = true;
            let requests = self
                .inner
                .load_requests
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let _ = requests.send(index);
        }
        false
    }

    /// The pinned model's generator (after [`ModelSet::acquire`] returned true).
    pub fn generator(&self, model: &str) -> Option<SharedGenerator> {
        let index = *self.inner.by_name.get(model)?;
        self.lock().slots[index].generator.clone()
    }

    /// The job on `model` is done: unpin it, and unload what the budget no longer allows.
    pub fn release(&self, model: &str) {
        let Some(&index) = self.inner.by_name.get(model) else {
            return;
        };
        let evicted = {
            let mut state = self.lock();
            let slot = &mut state.slots[index];
            slot.pins = slot.pins.saturating_sub(1);
            self.evict_over_budget(&mut state, None, 0)
        };
        drop(evicted);
    }

    /// Unloads least recently used, unpinned models (never `keep`) until `extra` more bytes (or
    /// one more model, for a count budget) fit; returns the unloaded generators, to be dropped
    /// outside the lock.
    fn evict_over_budget(
        &self,
        state: &mut State,
        keep: Option<usize>,
        extra: u64,
    ) -> Vec<SharedGenerator> {
        let mut evicted = Vec::new();
        loop {
            let resident: Vec<usize> = (0..state.slots.len())
                .filter(|&i| state.slots[i].generator.is_some())
                .collect();
            let bytes: u64 = resident
                .iter()
                .map(|&i| self.inner.entries[i].weight_bytes)
                .sum();
            let adding = u64::from(keep.is_some() || extra > 0);
            if self
                .inner
                .budget
                .fits(resident.len() as u64 + adding, bytes + extra)
            {
                return evicted;
            }
            let victim = resident
                .iter()
                .copied()
                .filter(|&i| Some(i) != keep && state.slots[i].pins == 0)
                .min_by_key(|&i| state.slots[i].last_used);
            let Some(victim) = victim else {
                return evicted;
            };
            // With nothing being added, the last resident model stays (someone asked for it).
            if adding == 0 && resident.len() == 1 {
                return evicted;
            }
            tracing::info!(
                model = %self.inner.entries[victim].name,
                "unloading the least recently used model to stay within the memory budget"
            );
            if let Some(g) = state.slots[victim].generator.take() {
                evicted.push(g);
            }
        }
    }

    /// The loader thread: one model at a time, in request order.
    fn load_loop(&self, requests: Receiver<usize>, queue: JobQueue) {
        while let Ok(index) = requests.recv() {
            self.load_one(index, &queue);
        }
    }

    fn load_one(&self, index: usize, queue: &JobQueue) {
        let entry = &self.inner.entries[index];
        let name = entry.name.clone();
        let evicted = {
            let mut state = self.lock();
            state.loading_now = Some(index);
            self.evict_over_budget(&mut state, Some(index), entry.weight_bytes)
        };
        drop(evicted);
        let span = tracing::info_span!("load", model = %name);
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let outcome = match &entry.problem {
            Some(problem) => Err(problem.clone()),
            None => {
                let mut on_step = |step: LoadStep| {
                    queue.notify_pending(&name, |request_id| DaemonMessage::ModelLoading {
                        request_id,
                        model: name.clone(),
                        step: step.step,
                        total_steps: step.total,
                        component: step.component.clone(),
                    });
                };
                on_step(LoadStep {
                    step: 0,
                    total: 0,
                    component: "starting".into(),
                });
                self.inner.loader.load(&entry.path, &mut on_step)
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        let failed = {
            let mut state = self.lock();
            state.loading_now = None;
            let slot = &mut state.slots[index];
            slot.loading = false;
            match outcome {
                Ok(generator) => {
                    tracing::info!(ms, "model loaded on first use");
                    slot.generator = Some(Arc::new(Mutex::new(generator)));
                    slot.load_error = entry.problem.clone();
                    None
                }
                Err(error) => {
                    tracing::warn!(ms, %error, "model failed to load; the daemon keeps serving the others");
                    slot.load_error = Some(error.clone());
                    Some(error)
                }
            }
        };
        match failed {
            None => queue.wake(),
            Some(error) => queue.fail_model(
                &name,
                ErrorCode::ModelLoadFailed,
                &format!("model {name:?} failed to load: {error}"),
            ),
        }
    }

    /// `ListModels`: every model, resident or not, with its roles.
    pub fn list(&self) -> Vec<ModelInfo> {
        let roles: Vec<(ModelRole, usize)> = ModelRole::ALL
            .iter()
            .map(|&role| (role, self.model_for(role)))
            .collect();
        let state = self.lock();
        self.inner
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let slot = &state.slots[i];
                let loaded = slot.generator.is_some();
                let defaults = entry.info.as_ref().map(|i| i.sampling).unwrap_or_default();
                ModelInfo {
                    loaded,
                    roles: roles
                        .iter()
                        .filter(|(_, m)| *m == i)
                        .map(|(r, _)| *r)
                        .collect(),
                    shared_bytes: if loaded {
                        self.inner.loader.shared_bytes(&entry.path)
                    } else {
                        0
                    },
                    load_error: slot.load_error.clone().unwrap_or_default(),
                    default_sampler: defaults.choice.sampler,
                    default_spacing: defaults.choice.spacing,
                    default_steps: defaults.steps,
                    default_guidance: defaults.guidance,
                    ..entry.listing.clone()
                }
            })
            .collect()
    }

    /// Residency figures for `DaemonStatus`.
    pub fn residency(&self) -> Residency {
        let state = self.lock();
        let weights: u64 = (0..state.slots.len())
            .filter(|&i| state.slots[i].generator.is_some())
            .map(|i| self.inner.entries[i].weight_bytes)
            .sum();
        let (budget_bytes, max_resident_models) = self.inner.budget.wire();
        Residency {
            resident_bytes: weights.saturating_sub(self.inner.loader.shared_savings()),
            budget_bytes,
            max_resident_models,
            loading_model: state
                .loading_now
                .map(|i| self.inner.entries[i].name.clone())
                .unwrap_or_default(),
        }
    }

    /// Names of the resident models, least recently used first (tests, logs).
    pub fn resident(&self) -> Vec<String> {
        let state = self.lock();
        let mut resident: Vec<(u64, String)> = (0..state.slots.len())
            .filter(|&i| state.slots[i].generator.is_some())
            .map(|i| (state.slots[i].last_used, self.inner.entries[i].name.clone()))
            .collect();
        resident.sort();
        resident.into_iter().map(|(_, n)| n).collect()
    }
}

/// The loader of a set whose only model is already resident.
struct NothingToLoad;

impl GeneratorLoader for NothingToLoad {
    fn load(
        &self,
        path: &std::path::Path,
        _on_step: &mut dyn FnMut(LoadStep),
    ) -> Result<Box<dyn ImageGenerator>, String> {
        Err(format!(
            "{}: this daemon cannot load models",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, sync_channel};
    use std::time::Duration;

    use livefill_protocol::{GenerateRequest, RgbaImage};

    use super::*;
    use crate::generator::{CancelToken, GenerateError, GenerateOutput, StepProgress};
    use crate::jobs::{Job, Outbox, OutboxReceiver, spawn_worker};
    use crate::request::default_request;

    /// Answers every job at once with its model's name.
    struct Named(String);

    impl ImageGenerator for Named {
        fn info(&self) -> GeneratorInfo {
            GeneratorInfo::stand_in(&self.0, vec![Mode::Txt2Img], Default::default())
        }

        fn generate(
            &mut self,
            _request: &GenerateRequest,
            seed: u64,
            _cancel: &CancelToken,
            _on_step: &mut dyn FnMut(StepProgress),
        ) -> Result<GenerateOutput, GenerateError> {
            Ok(GenerateOutput {
                image: RgbaImage::new(1, 1, vec![0; 4]),
                offset_x: 0,
                offset_y: 0,
                seed,
                timings: Vec::new(),
                model: self.0.clone(),
            })
        }
    }

    /// Loads only when the test lets it (one `()` per load).
    struct GatedLoader(Mutex<Receiver<()>>);

    impl GeneratorLoader for GatedLoader {
        fn load(
            &self,
            path: &std::path::Path,
            on_step: &mut dyn FnMut(LoadStep),
        ) -> Result<Box<dyn ImageGenerator>, String> {
            on_step(LoadStep {
                step: 1,
                total: 2,
                component: "unet".into(),
            });
            self.0.lock().unwrap().recv().map_err(|e| e.to_string())?;
            Ok(Box::new(Named(path.display().to_string())))
        }
    }

    fn entry(name: &str) -> ModelEntry {
        let generator = Named(name.into());
        ModelEntry {
            name: name.into(),
            path: PathBuf::from(name),
            info: Some(generator.info()),
            listing: ModelInfo {
                weight_bytes: 10,
                ..ModelInfo::new(name, name)
            },
            weight_bytes: 10,
            problem: None,
        }
    }

    #[test]
    fn a_load_does_not_hold_up_jobs_on_resident_models() {
        let queue = JobQueue::new();
        let (let_load, gate) = sync_channel(1);
        let catalog = Catalog {
            entries: vec![entry("a"), entry("b")],
            default: 0,
            default_generator: Box::new(Named("a".into())),
            budget: MemoryBudget::Bytes(100),
            loader: Arc::new(GatedLoader(Mutex::new(gate))),
        };
        let models = ModelSet::start(catalog, queue.clone()).unwrap();
        let worker = spawn_worker(models.clone(), queue.clone()).unwrap();
        let submit = |id: u64, model: &str| {
            let (tx, rx) = Outbox::channel();
            let mut request = default_request(Mode::Txt2Img);
            request.request_id = id;
            queue.submit(Job::new(1, "t", request, model, tx)).unwrap();
            rx
        };
        let final_of = |rx: &mut OutboxReceiver| {
            let mut seen = Vec::new();
            loop {
                let msg = rx.blocking_recv_message().expect("an answer");
                let done = matches!(msg, DaemonMessage::Result(_) | DaemonMessage::Error(_));
                seen.push(msg);
                if done {
                    return seen;
                }
            }
        };
        let mut on_b = submit(1, "b");
        let mut on_a = submit(2, "a");
        // "b" is loading (held by the gate); the job on resident "a", queued behind it, runs.
        let answer = final_of(&mut on_a);
        assert!(matches!(answer.last(), Some(DaemonMessage::Result(r)) if r.model == "a"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while models.residency().loading_model != "b" {
            assert!(
                std::time::Instant::now() < deadline,
                "b is reported loading"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let_load.send(()).unwrap();
        let answer = final_of(&mut on_b);
        assert!(
            answer
                .iter()
                .any(|m| matches!(m, DaemonMessage::ModelLoading { model, .. } if model == "b")),
            "{answer:?}"
        );
        assert!(matches!(answer.last(), Some(DaemonMessage::Result(r)) if r.model == "b"));
        assert_eq!(models.resident(), ["a", "b"]);
        queue.shutdown();
        assert!(worker.join_timeout(Duration::from_secs(5)));
    }
}
