//! One inference engine per model file and settings, shared by every
//! `slowfast` element in the process, with one worker thread that batches
//! the clips of all of them: two cameras on one model cost one session and,
//! when their clips are ready together, one batched run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use runtime::engine::{Backend, Engine, EngineError, EngineOptions, Provider};
use runtime::model_info::ModelInfo;
use runtime::preprocess::Clip;

/// Clips run together at most by default; more wait for the next run.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// What makes two elements able to share an engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineKey {
    pub model: PathBuf,
    pub backend: Backend,
    pub strict: bool,
    pub fp16: bool,
    pub cache_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    /// Clips of all the elements on this engine run together at most.
    pub max_batch: usize,
}

/// A clip's class probabilities and the size of the batch it ran in.
pub struct Scored {
    pub scores: Vec<f32>,
    pub batch: usize,
}

/// Called on the worker thread with the clip's result.
pub type Done = Box<dyn FnOnce(Result<Scored, String>) + Send>;

pub struct Job {
    pub clip: Clip,
    pub done: Done,
}

pub struct SharedEngine {
    pub info: ModelInfo,
    pub provider: Provider,
    pub fallbacks: Vec<String>,
    jobs: Mutex<Option<Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

fn registry() -> &'static Mutex<HashMap<EngineKey, Weak<SharedEngine>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<EngineKey, Weak<SharedEngine>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl SharedEngine {
    /// The engine for `key`, loading it if no live element holds one.
    pub fn get(key: &EngineKey) -> Result<Arc<SharedEngine>, EngineError> {
        // Held while loading, so two elements starting together load once.
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(engine) = map.get(key).and_then(Weak::upgrade) {
            return Ok(engine);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let mut opts = EngineOptions { backend: key.backend, strict: key.strict, threads: key.threads, ..Default::default() };
        opts.tensorrt.fp16 = key.fp16;
        opts.tensorrt.max_batch = key.max_batch.max(1);
        if let Some(dir) = &key.cache_dir {
            opts.tensorrt.cache_dir = Some(dir.clone());
        }
        opts.openvino.cache_dir = key.cache_dir.clone().or_else(runtime::engine::openvino::default_cache_dir);
        let engine = Engine::load(&key.model, &opts)?;
        let shared = Arc::new(SharedEngine::start(engine, key.max_batch.max(1)));
        map.insert(key.clone(), Arc::downgrade(&shared));
        Ok(shared)
    }

    fn start(engine: Engine, max_batch: usize) -> SharedEngine {
        let (tx, rx) = mpsc::channel();
        let info = engine.info().clone();
        let provider = engine.provider();
        let fallbacks = engine.fallbacks().to_vec();
        let worker = std::thread::Builder::new().name("slowfast-infer".into()).spawn(move || run_worker(engine, rx, max_batch)).ok();
        SharedEngine { info, provider, fallbacks, jobs: Mutex::new(Some(tx)), worker: Mutex::new(worker) }
    }

    /// Queues a clip; never blocks. A job that cannot be queued (worker
    /// gone) is answered at once with an error.
    pub fn submit(&self, job: Job) {
        let sender = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match sender {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    (job.done)(Err("the inference worker has stopped".into()));
                }
            }
            None => (job.done)(Err("the inference worker has stopped".into())),
        }
    }
}

impl Drop for SharedEngine {
    fn drop(&mut self) {
        // Closing the channel ends the worker after the jobs still queued.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = worker.join();
        }
    }
}

/// Nice value of the inference thread: streaming threads (decoders,
/// encoders, the element's frame path) win the CPU, so a busy machine skips
/// predictions instead of slowing the video.
const WORKER_NICE: i32 = 10;

fn run_worker(mut engine: Engine, rx: Receiver<Job>, max_batch: usize) {
    // On Linux, nice applies to the calling thread alone; failure only
    // means the worker keeps the default priority.
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE);
    }
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let clips: Vec<&Clip> = batch.iter().map(|j| &j.clip).collect();
        let result = engine.probabilities(&clips);
        let n = batch.len();
        match result {
            Ok(scores) => {
                for (job, s) in batch.into_iter().zip(scores) {
                    (job.done)(Ok(Scored { scores: s, batch: n }));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in batch {
                    (job.done)(Err(msg.clone()));
                }
            }
        }
    }
}
