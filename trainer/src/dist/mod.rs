//! Data-parallel training on libtorch's c10d, the engine under
//! `torch.distributed`: a TCPStore rendezvous, a Gloo (CPU) or NCCL (CUDA)
//! process group, DDP's Reducer for the gradients, and sync-BN groups.
//!
//! Launch contracts are torchrun's ([`env`]); `trainer train
//! --nproc-per-node N` is a launcher of its own that keeps the same contract
//! ([`launcher`]). A rank that fails leaves its error in the store, and
//! every rank leaves the last step it finished there, so the survivors of a
//! crash can say which rank stopped.

pub mod env;
pub mod ffi;
pub mod launcher;

use std::sync::Arc;
use std::time::Duration;

use tch::{Device, Kind, Tensor, nn};

pub use env::Launch;

use crate::data::Failure;
pub use ffi::{Backend, C10dError, Group, Store};

/// This rank's connection to the others.
pub struct Dist {
    pub launch: Launch,
    pub store: Store,
    pub group: Arc<Group>,
    pub timeout: Duration,
    /// Where collective tensors live: CPU for Gloo, this rank's GPU for NCCL.
    pub device: Device,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DistError(pub String);

impl Dist {
    /// Joins the job: the store (served by rank 0 unless a launcher agent
    /// serves it), a check that every rank runs the same `job` (a
    /// fingerprint of the recipe and world size, see `check_same`),
    /// then the default process group.
    pub fn init(launch: Launch, backend: Backend, timeout: Duration, device: Device, job: &str) -> Result<Dist, DistError> {
        let ms = timeout.as_millis() as i64;
        let at = format!("{}:{}", launch.master_addr, launch.master_port);
        let is_server = !launch.agent_store && launch.rank == 0;
        let store = Store::new(&launch.master_addr, launch.master_port, is_server, launch.world_size, ms, &launch.store_prefix())
            .map_err(|e| DistError(format!("rank {}: cannot reach the rendezvous store at {at} ({}): {e}", launch.rank, launch.source)))?;
        // Before the process group: ranks that disagree on the world size
        // would otherwise wait in Gloo's rendezvous for the whole timeout.
        check_same(&store, &launch, timeout, "job", job)?;
        let cuda = match device {
            Device::Cuda(i) => i,
            _ => 0,
        };
        let group = Group::new(&store, "default_pg/", launch.rank, launch.world_size, backend, ms, cuda)
            .map_err(|e| DistError(format!("rank {}: the {backend:?} process group over {at} did not form: {e}", launch.rank)))?;
        let device = match backend {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl => device,
        };
        Ok(Dist { launch, store, group: Arc::new(group), timeout, device })
    }

    pub fn rank(&self) -> usize {
        self.launch.rank
    }

    pub fn world(&self) -> usize {
        self.launch.world_size
    }

    pub fn is_main(&self) -> bool {
        self.launch.rank == 0
    }

    /// The sync-BN group of this rank: `size` consecutive ranks
    /// (PySlowFast's `NUM_SYNC_DEVICES`).
    pub fn subgroup(&self, size: usize, backend: Backend) -> Result<Arc<Group>, DistError> {
        if size == self.world() {
            return Ok(self.group.clone());
        }
        let g = self.rank() / size;
        let cuda = match self.device {
            Device::Cuda(i) => i,
            _ => 0,
        };
        let group = Group::new(
            &self.store,
            &format!("sync_bn_{size}_{g}/"),
            self.rank() % size,
            size,
            backend,
            self.timeout.as_millis() as i64,
            cuda,
        )
        .map_err(|e| DistError(format!("rank {}: sync-BN group {g} did not form: {e}", self.rank())))?;
        Ok(Arc::new(group))
    }

    /// Records that this rank finished optimisation step `step`.
    pub fn heartbeat(&self, step: u64) {
        let _ = self.store.set(&format!("progress/{}", self.rank()), step.to_string().as_bytes());
    }

    /// Leaves this rank's error where the others look when their
    /// collectives fail.
    pub fn report_error(&self, why: &str) {
        let _ = self.store.set(&format!("error/{}", self.rank()), why.as_bytes());
    }

    /// A failed collective at `step`, explained with what the store knows
    /// of the other ranks: which one a launcher saw exit, which one
    /// reported an error, which one stopped at an earlier step.
    pub fn explain(&self, step: u64, what: &str, e: &dyn std::fmt::Display) -> DistError {
        // A launcher notices a dead worker within a fraction of a second;
        // give it that long to say so.
        let mut seen = self.others_state(step);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while seen.as_ref().is_ok_and(|s| s.is_empty()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            seen = self.others_state(step);
        }
        let who = match seen {
            Err(store) => format!(
                "the rendezvous store at {}:{} is gone too ({store}): its host (the launcher or rank 0) stopped",
                self.launch.master_addr, self.launch.master_port
            ),
            Ok(s) if s.is_empty() => {
                format!("no other rank reported a failure; one may hang (collective timeout {:?})", self.timeout)
            }
            Ok(s) => s.join("; "),
        };
        DistError(format!("{what} at step {step} failed: {e}; {who}"))
    }

    /// What the store says of every other rank that is not well.
    fn others_state(&self, step: u64) -> Result<Vec<String>, C10dError> {
        let read = |key: String| -> Result<Option<String>, C10dError> {
            if self.store.check(&key)? { Ok(Some(String::from_utf8_lossy(&self.store.get(&key)?).into_owned())) } else { Ok(None) }
        };
        let mut seen = Vec::new();
        for r in (0..self.world()).filter(|&r| r != self.rank()) {
            if let Some(exit) = read(format!("exit/{r}"))? {
                seen.push(exit);
            } else if let Some(why) = read(format!("error/{r}"))? {
                seen.push(format!("rank {r} failed: {why}"));
            } else {
                match read(format!("progress/{r}"))?.and_then(|v| v.parse::<u64>().ok()) {
                    Some(s) if s < step => seen.push(format!("rank {r} stopped after step {s} (died or hangs)")),
                    None if step > 0 => seen.push(format!("rank {r} never finished a step (died or hangs)")),
                    _ => {}
                }
            }
        }
        Ok(seen)
    }

    fn store_error(&self, e: &C10dError) -> DistError {
        DistError(format!("rank {}: the rendezvous store at {}:{}: {e}", self.rank(), self.launch.master_addr, self.launch.master_port))
    }

    /// Every variable of `vs` (parameters and BN buffers) takes rank 0's
    /// values, as DDP's construction does.
    pub fn broadcast_vars(&self, vs: &nn::VarStore) -> Result<(), C10dError> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (_, t) in &vars {
                self.broadcast_in_place(t)?;
            }
            Ok(())
        })
    }

    /// `t` takes rank 0's values, going through the communication device.
    pub fn broadcast_in_place(&self, t: &Tensor) -> Result<(), C10dError> {
        let buf = t.to_device(self.device).contiguous();
        self.group.broadcast(&[&buf], 0)?;
        let mut t = t.shallow_clone();
        tch::no_grad(|| t.copy_(&buf));
        Ok(())
    }

    /// Sums `values` over all ranks (counts, losses for logging), in f64.
    pub fn sum_f64(&self, values: &mut [f64]) -> Result<(), C10dError> {
        let t = Tensor::from_slice(values).to_kind(Kind::Double).to_device(self.device);
        self.group.all_reduce_sum(&[&t])?;
        let t = t.to_device(Device::Cpu);
        for (i, v) in values.iter_mut().enumerate() {
            *v = t.double_value(&[i as i64]);
        }
        Ok(())
    }

    /// Rank 0's `value` on every rank (through the store).
    pub fn agree_on(&self, key: &str, value: Option<usize>) -> Result<Option<usize>, DistError> {
        let key = format!("agree/{key}");
        if self.is_main() {
            let text = value.map(|v| v.to_string()).unwrap_or_default();
            self.store.set(&key, text.as_bytes()).map_err(|e| self.store_error(&e))?;
            return Ok(value);
        }
        let text = self.store.get(&key).map_err(|e| self.store_error(&e))?;
        let text = String::from_utf8_lossy(&text);
        Ok(text.parse::<usize>().ok())
    }

    /// BN running statistics and counters take rank 0's values (what DDP's
    /// `broadcast_buffers` keeps in step).
    pub fn broadcast_buffers(&self, vs: &nn::VarStore) -> Result<(), C10dError> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| !t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, t) in &vars {
            self.broadcast_in_place(t)?;
        }
        Ok(())
    }

    /// Averages `tensors` over all ranks, in place.
    pub fn average_in_place(&self, tensors: &[Tensor]) -> Result<(), C10dError> {
        tch::no_grad(|| {
            for t in tensors {
                let buf = t.to_device(self.device).to_kind(Kind::Double).contiguous();
                self.group.all_reduce_sum(&[&buf])?;
                let mut t = t.shallow_clone();
                t.copy_(&(buf / self.world() as f64));
            }
            Ok(())
        })
    }

    /// Rank 0 gets every rank's unreadable videos (in rank order); the
    /// others `None`. Used for training epochs and the multi-view test.
    pub fn gather_failures(&self, key: &str, failures: &[Failure]) -> Result<Option<Vec<Failure>>, DistError> {
        let text: String = failures.iter().map(|f| format!("{}\t{}\n", f.name, f.why.replace('\n', " "))).collect();
        let texts = self.gather_text(key, &text)?;
        Ok(texts.map(|texts| {
            texts
                .iter()
                .flat_map(|t| t.lines())
                .filter_map(|l| l.split_once('\t'))
                .map(|(name, why)| Failure { name: name.to_string(), why: why.to_string() })
                .collect()
        }))
    }

    /// Rank 0 gets every rank's `text` (in rank order); the others `None`.
    /// Through the store: for small reports such as lists of bad videos.
    pub fn gather_text(&self, key: &str, text: &str) -> Result<Option<Vec<String>>, DistError> {
        let k = |r: usize| format!("gather/{key}/{r}");
        self.store.set(&k(self.rank()), text.as_bytes()).map_err(|e| self.store_error(&e))?;
        if !self.is_main() {
            return Ok(None);
        }
        (0..self.world())
            .map(|r| self.store.get(&k(r)).map(|v| String::from_utf8_lossy(&v).into_owned()).map_err(|e| self.store_error(&e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// FNV-1a, 64 bits: a stable fingerprint of a recipe to compare across
/// ranks (std's hasher may differ between builds on different nodes).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Refuses to go on unless every rank has the same `value` for `what`:
/// each rank posts its own and reads all the others', so every rank stops
/// with the same message (a rank missing altogether ends in the store's
/// timeout, named).
fn check_same(store: &Store, launch: &Launch, timeout: Duration, what: &str, value: &str) -> Result<(), DistError> {
    let me = launch.rank;
    let key = |r: usize| format!("check/{what}/{r}");
    store.set(&key(me), value.as_bytes()).map_err(|e| DistError(format!("rank {me}: the rendezvous store: {e}")))?;
    let mut differ = Vec::new();
    for r in 0..launch.world_size {
        let theirs = store.get(&key(r)).map_err(|e| {
            DistError(format!("rank {me}: rank {r} did not join within {timeout:?} (world size {}): {e}", launch.world_size))
        })?;
        let theirs = String::from_utf8_lossy(&theirs).into_owned();
        if theirs != value {
            differ.push(format!("rank {r}: {theirs}"));
        }
    }
    if differ.is_empty() {
        return Ok(());
    }
    Err(DistError(format!("the ranks disagree on the {what}: rank {me}: {value}; {}", differ.join("; "))))
}
