//! The CPUs a stress test runs its threads on: which this process may use,
//! pinning a thread to one, and joining the threads (`lock-stress`,
//! `dispatcher-stress`).

use crate::error::{Error, Result};

/// The CPUs this process may run on (its affinity mask, which `taskset`
/// or a cpuset may have narrowed), lowest first.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map_err(|e| Error::Setup(format!("failed to read the CPU affinity: {e}")))?;
    let cpus = cpus_in(&set);
    if cpus.is_empty() {
        return Err(Error::Setup("the CPU affinity allows no CPU".into()));
    }
    Ok(cpus)
}

/// The CPUs in `set`, lowest first.
fn cpus_in(set: &nix::sched::CpuSet) -> Vec<usize> {
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// The results of scoped test-run threads, in order; the first error, or
/// a panic as one.
pub fn join_all<T>(workers: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Result<Vec<T>> {
    workers
        .into_iter()
        .map(|w| {
            w.join()
                .map_err(|_| Error::Setup("a test-run thread panicked".into()))?
        })
        .collect()
}

/// Pin the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
        .map_err(|e| Error::Setup(format!("failed to pin a test-run thread to CPU {cpu}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpus_are_those_of_the_set() {
        let mut set = nix::sched::CpuSet::new();
        assert_eq!(cpus_in(&set), Vec::<usize>::new());
        // As `taskset -c 2,3,7` leaves it.
        for cpu in [7, 2, 3] {
            set.set(cpu).expect("a CPU the set can hold");
        }
        assert_eq!(cpus_in(&set), [2, 3, 7]);
    }
}
