//! Who this process is in a distributed run, read from the environment the
//! launchers set: torchrun (and `trainer train --nproc-per-node`, which sets
//! the same variables), a hand-made `RANK`/`WORLD_SIZE` launch, or Slurm.

use std::collections::HashMap;

/// torch.distributed's default rendezvous port.
pub const DEFAULT_PORT: u16 = 29500;

/// One process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// Restarts of the whole job so far (torchrun's `--max-restarts`).
    pub restart_count: u64,
    /// The launcher's agent hosts the TCPStore and every rank is a client
    /// (torchrun, and our own launcher); otherwise rank 0 hosts it.
    pub agent_store: bool,
    /// Which contract the values came from, for messages.
    pub source: &'static str,
}

impl Launch {
    /// Keys under which torchrun's agent store keeps one attempt's data.
    pub fn store_prefix(&self) -> String {
        if self.agent_store { format!("/worker/attempt_{}", self.restart_count) } else { String::new() }
    }

    /// From the process environment; `None` when nothing says this is one
    /// rank of several.
    pub fn from_env() -> Result<Option<Launch>, String> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(env: &HashMap<String, String>) -> Result<Option<Launch>, String> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let num = |k: &str| -> Result<Option<u64>, String> {
            get(k).map(|v| v.parse::<u64>().map_err(|_| format!("environment variable {k}={v:?} is not a whole number"))).transpose()
        };
        let port = |fallback: u16| -> Result<u16, String> {
            match get("MASTER_PORT") {
                None => Ok(fallback),
                Some(v) => v.parse::<u16>().map_err(|_| format!("environment variable MASTER_PORT={v:?} is not a port number")),
            }
        };
        if let Some(world) = num("WORLD_SIZE")? {
            let rank = num("RANK")?.ok_or("WORLD_SIZE is set but RANK is not")?;
            let source = if get("TORCHELASTIC_RUN_ID").is_some() || get("TORCHELASTIC_RESTART_COUNT").is_some() {
                "torchrun"
            } else {
                "RANK/WORLD_SIZE"
            };
            let launch = Launch {
                rank: rank as usize,
                world_size: world as usize,
                local_rank: num("LOCAL_RANK")?.unwrap_or(0) as usize,
                master_addr: get("MASTER_ADDR").unwrap_or("127.0.0.1").to_string(),
                master_port: port(DEFAULT_PORT)?,
                restart_count: num("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0),
                agent_store: get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
                source,
            };
            if world > 1 && get("MASTER_ADDR").is_none() {
                return Err("WORLD_SIZE > 1 but MASTER_ADDR is not set: say where rank 0 (or the launcher) listens".into());
            }
            return launch.checked().map(Some);
        }
        if let (Some(rank), Some(world)) = (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
            if world <= 1 {
                return Ok(None);
            }
            let master_addr = match get("MASTER_ADDR") {
                Some(a) => a.to_string(),
                None => {
                    let list = get("SLURM_JOB_NODELIST")
                        .or(get("SLURM_NODELIST"))
                        .ok_or("Slurm job without MASTER_ADDR or SLURM_JOB_NODELIST: export MASTER_ADDR=<first node>")?;
                    first_host(list)
                        .ok_or_else(|| format!("SLURM_JOB_NODELIST={list:?}: cannot tell its first host; export MASTER_ADDR"))?
                }
            };
            let launch = Launch {
                rank: rank as usize,
                world_size: world as usize,
                local_rank: num("SLURM_LOCALID")?.unwrap_or(0) as usize,
                master_addr,
                master_port: port(DEFAULT_PORT)?,
                restart_count: num("SLURM_RESTART_COUNT")?.unwrap_or(0),
                agent_store: false,
                source: "Slurm",
            };
            return launch.checked().map(Some);
        }
        Ok(None)
    }

    fn checked(self) -> Result<Self, String> {
        if self.world_size == 0 {
            return Err(format!("{}: the world size is 0", self.source));
        }
        if self.rank >= self.world_size {
            return Err(format!("{}: rank {} is outside a world of {}", self.source, self.rank, self.world_size));
        }
        Ok(self)
    }
}

/// The first host of a Slurm node list: `node[03-05,9],gpu1` -> `node03`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let end = list.find([',', '[']).unwrap_or(list.len());
    let prefix = &list[..end];
    if list[end..].starts_with('[') {
        let inner = &list[end + 1..list[end..].find(']')? + end];
        let first = inner.split([',', '-']).next()?;
        Some(format!("{prefix}{first}"))
    } else if prefix.is_empty() {
        None
    } else {
        Some(prefix.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn torchrun_variables() {
        let l = Launch::from_vars(&vars(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank, l.master_port, l.restart_count), (3, 4, 1, 29400, 2));
        assert!(l.agent_store);
        assert_eq!(l.store_prefix(), "/worker/attempt_2");
        assert_eq!(l.source, "torchrun");
    }

    #[test]
    fn slurm_variables_and_node_lists() {
        let l = Launch::from_vars(&vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank, l.master_addr.as_str(), l.master_port), (5, 8, 1, "gpu07", DEFAULT_PORT));
        assert!(!l.agent_store);
        assert_eq!(first_host("a1,b2"), Some("a1".into()));
        assert_eq!(first_host("n[3,5-9]"), Some("n3".into()));
        // One task is a single process.
        assert_eq!(Launch::from_vars(&vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")])).unwrap(), None);
    }

    #[test]
    fn bad_values_are_named() {
        let e = Launch::from_vars(&vars(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])).unwrap_err();
        assert!(e.contains("rank 2 is outside a world of 2"), "{e}");
        let e = Launch::from_vars(&vars(&[("RANK", "x"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(e.contains("RANK"), "{e}");
        let e = Launch::from_vars(&vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(e.contains("MASTER_ADDR"), "{e}");
        assert_eq!(Launch::from_vars(&vars(&[])).unwrap(), None);
    }
}
