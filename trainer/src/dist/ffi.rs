//! Safe handles over the C++ shim of `csrc/c10d.cpp`: libtorch's TCPStore,
//! process groups and DDP Reducer. Every call returns the C++ exception's
//! message as an error instead of unwinding across the boundary.

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr::NonNull;

use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct RawStore {
    _p: [u8; 0],
}
#[repr(C)]
struct RawGroup {
    _p: [u8; 0],
}
#[repr(C)]
struct RawReducer {
    _p: [u8; 0],
}

unsafe extern "C" {
    fn sf_free_string(s: *mut c_char);
    fn sf_free_bytes(b: *mut u8);
    fn sf_store_new(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world_size: i64,
        timeout_ms: i64,
        prefix: *const c_char,
        err: *mut *mut c_char,
    ) -> *mut RawStore;
    fn sf_store_set(s: *mut RawStore, key: *const c_char, value: *const u8, len: usize, err: *mut *mut c_char) -> c_int;
    fn sf_store_get(s: *mut RawStore, key: *const c_char, len: *mut usize, err: *mut *mut c_char) -> *mut u8;
    fn sf_store_check(s: *mut RawStore, key: *const c_char, err: *mut *mut c_char) -> c_int;
    fn sf_store_add(s: *mut RawStore, key: *const c_char, delta: i64, err: *mut *mut c_char) -> i64;
    fn sf_group_new(
        s: *mut RawStore,
        prefix: *const c_char,
        rank: c_int,
        size: c_int,
        backend: c_int,
        timeout_ms: i64,
        cuda_device: c_int,
        err: *mut *mut c_char,
    ) -> *mut RawGroup;
    fn sf_group_allreduce(g: *mut RawGroup, ts: *const *mut C_tensor, n: usize, err: *mut *mut c_char) -> c_int;
    fn sf_group_broadcast(g: *mut RawGroup, ts: *const *mut C_tensor, n: usize, root: c_int, err: *mut *mut c_char) -> c_int;
    fn sf_group_barrier(g: *mut RawGroup, err: *mut *mut c_char) -> c_int;
    fn sf_allreduce_autograd(g: *mut RawGroup, x: *mut C_tensor, err: *mut *mut c_char) -> *mut C_tensor;
    fn sf_reducer_new(
        g: *mut RawGroup,
        ps: *const *mut C_tensor,
        n: usize,
        first_bucket_bytes: i64,
        bucket_bytes: i64,
        err: *mut *mut c_char,
    ) -> *mut RawReducer;
    fn sf_reducer_prepare(r: *mut RawReducer, err: *mut *mut c_char) -> c_int;
    fn sf_reducer_free(r: *mut RawReducer);
    fn sf_autocast_set(device_type: c_int, enabled: bool, dtype: c_int, err: *mut *mut c_char) -> c_int;
}

/// What a c10d call threw.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct C10dError(pub String);

/// Runs `f` with an error slot and turns a filled slot into an error.
fn call<T>(f: impl FnOnce(*mut *mut c_char) -> T) -> Result<T, C10dError> {
    let mut err: *mut c_char = std::ptr::null_mut();
    let out = f(&mut err);
    if err.is_null() {
        return Ok(out);
    }
    // SAFETY: the shim hands back a NUL-terminated malloc'd string.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { sf_free_string(err) };
    Err(C10dError(msg))
}

fn cstring(s: &str) -> Result<CString, C10dError> {
    CString::new(s).map_err(|_| C10dError(format!("{s:?} contains a NUL byte")))
}

fn raw_tensors(ts: &[&Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// A TCPStore client or server. Never freed: a process keeps its store to
/// the end, and tearing one down while a peer is stuck can block.
pub struct Store(NonNull<RawStore>);

// SAFETY: c10d's stores are thread-safe (TCPStore serialises its socket).
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    pub fn new(host: &str, port: u16, is_server: bool, world_size: usize, timeout_ms: i64, prefix: &str) -> Result<Self, C10dError> {
        let (host, prefix) = (cstring(host)?, cstring(prefix)?);
        let raw = call(|err| unsafe { sf_store_new(host.as_ptr(), port, is_server, world_size as i64, timeout_ms, prefix.as_ptr(), err) })?;
        NonNull::new(raw).map(Store).ok_or_else(|| C10dError("TCPStore: null handle".into()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), C10dError> {
        let key = cstring(key)?;
        call(|err| unsafe { sf_store_set(self.0.as_ptr(), key.as_ptr(), value.as_ptr(), value.len(), err) })?;
        Ok(())
    }

    /// Waits for `key` up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, C10dError> {
        let key = cstring(key)?;
        let mut len = 0usize;
        let raw = call(|err| unsafe { sf_store_get(self.0.as_ptr(), key.as_ptr(), &mut len, err) })?;
        if raw.is_null() {
            return Err(C10dError("TCPStore get: null buffer".into()));
        }
        // SAFETY: `raw` holds `len` bytes, malloc'd by the shim.
        let v = unsafe { std::slice::from_raw_parts(raw, len) }.to_vec();
        unsafe { sf_free_bytes(raw) };
        Ok(v)
    }

    pub fn check(&self, key: &str) -> Result<bool, C10dError> {
        let key = cstring(key)?;
        Ok(call(|err| unsafe { sf_store_check(self.0.as_ptr(), key.as_ptr(), err) })? == 1)
    }

    pub fn add(&self, key: &str, delta: i64) -> Result<i64, C10dError> {
        let key = cstring(key)?;
        call(|err| unsafe { sf_store_add(self.0.as_ptr(), key.as_ptr(), delta, err) })
    }
}

/// Which c10d backend carries a group's collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Gloo,
    Nccl,
}

/// A c10d ProcessGroup of this rank. Never freed, as [`Store`].
pub struct Group {
    raw: NonNull<RawGroup>,
    pub rank: usize,
    pub size: usize,
    pub backend: Backend,
}

// SAFETY: c10d process groups take collectives from any thread; we issue
// them from one thread at a time, in the same order on every rank.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// Every rank of the group calls this with the same `prefix`.
    pub fn new(
        store: &Store,
        prefix: &str,
        rank: usize,
        size: usize,
        backend: Backend,
        timeout_ms: i64,
        cuda_device: usize,
    ) -> Result<Self, C10dError> {
        let prefix = cstring(prefix)?;
        let b = match backend {
            Backend::Gloo => 0,
            Backend::Nccl => 1,
        };
        let raw = call(|err| unsafe {
            sf_group_new(store.0.as_ptr(), prefix.as_ptr(), rank as c_int, size as c_int, b, timeout_ms, cuda_device as c_int, err)
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| C10dError("ProcessGroup: null handle".into()))?;
        Ok(Group { raw, rank, size, backend })
    }

    /// In-place sum over the group of each tensor (contiguous, same shapes
    /// on every rank).
    pub fn all_reduce_sum(&self, ts: &[&Tensor]) -> Result<(), C10dError> {
        let raw = raw_tensors(ts);
        call(|err| unsafe { sf_group_allreduce(self.raw.as_ptr(), raw.as_ptr(), raw.len(), err) })?;
        Ok(())
    }

    /// Each tensor takes `root`'s values, in place.
    pub fn broadcast(&self, ts: &[&Tensor], root: usize) -> Result<(), C10dError> {
        let raw = raw_tensors(ts);
        call(|err| unsafe { sf_group_broadcast(self.raw.as_ptr(), raw.as_ptr(), raw.len(), root as c_int, err) })?;
        Ok(())
    }

    pub fn barrier(&self) -> Result<(), C10dError> {
        call(|err| unsafe { sf_group_barrier(self.raw.as_ptr(), err) })?;
        Ok(())
    }

    /// The group's sum of `x`, recorded for autograd: backward sums the
    /// gradients over the group in the same way.
    pub fn all_reduce_sum_autograd(&self, x: &Tensor) -> Result<Tensor, C10dError> {
        let raw = call(|err| unsafe { sf_allreduce_autograd(self.raw.as_ptr(), x.as_ptr() as *mut C_tensor, err) })?;
        if raw.is_null() {
            return Err(C10dError("all_reduce: null tensor".into()));
        }
        // SAFETY: a new at::Tensor allocated by the shim, now owned here.
        Ok(unsafe { Tensor::from_ptr(raw) })
    }

    fn as_ptr(&self) -> *mut RawGroup {
        self.raw.as_ptr()
    }
}

/// libtorch's DDP `Reducer`: autograd hooks on the parameters all-reduce
/// full buckets of gradients while backward still runs, and write the
/// average back into every `.grad` before backward returns.
pub struct Reducer(NonNull<RawReducer>);

// SAFETY: the Reducer guards its state with its own mutex.
unsafe impl Send for Reducer {}

impl Reducer {
    pub fn new(group: &Group, params: &[&Tensor], first_bucket_bytes: i64, bucket_bytes: i64) -> Result<Self, C10dError> {
        let raw = raw_tensors(params);
        let r = call(|err| unsafe { sf_reducer_new(group.as_ptr(), raw.as_ptr(), raw.len(), first_bucket_bytes, bucket_bytes, err) })?;
        NonNull::new(r).map(Reducer).ok_or_else(|| C10dError("Reducer: null handle".into()))
    }

    /// Before each training forward, as DDP's forward does.
    pub fn prepare(&mut self) -> Result<(), C10dError> {
        call(|err| unsafe { sf_reducer_prepare(self.0.as_ptr(), err) })?;
        Ok(())
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        unsafe { sf_reducer_free(self.0.as_ptr()) }
    }
}

/// Precision of autocast regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocastDtype {
    Float16,
    BFloat16,
}

/// Runs `f` under autocast on `device`'s type (libtorch's, as
/// `torch.autocast`), restoring the previous state after.
pub fn autocast<T>(device: tch::Device, dtype: AutocastDtype, f: impl FnOnce() -> T) -> Result<T, C10dError> {
    let dev = if device.is_cuda() { 1 } else { 0 };
    let d = match dtype {
        AutocastDtype::Float16 => 0,
        AutocastDtype::BFloat16 => 1,
    };
    call(|err| unsafe { sf_autocast_set(dev, true, d, err) })?;
    let out = f();
    call(|err| unsafe { sf_autocast_set(dev, false, d, err) })?;
    Ok(out)
}
