//! Job and GPU slots: at most `max_jobs` jobs run at once, and with `--gpus` each running job
//! holds GPUs no other job holds. Slots are guards, so every way a job ends frees them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    jobs: Arc<Semaphore>,
    gpus: Arc<GpuPool>,
}

struct GpuPool {
    all: usize,
    free: Mutex<BTreeSet<usize>>,
    freed: Notify,
}

/// A running job's place.
pub struct JobSlot {
    _permit: OwnedSemaphorePermit,
}

/// GPUs held by one job; returned to the pool when dropped.
pub struct GpuLease {
    pool: Arc<GpuPool>,
    ids: Vec<usize>,
}

impl GpuLease {
    /// `CUDA_VISIBLE_DEVICES` for the job; `None` when the agent hands out no GPUs.
    pub fn visible_devices(&self) -> Option<String> {
        (self.pool.all > 0).then(|| {
            self.ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().expect("gpu pool");
        free.extend(self.ids.drain(..));
        drop(free);
        self.pool.freed.notify_waiters();
    }
}

impl Slots {
    pub fn new(max_jobs: usize, gpus: &[usize]) -> Self {
        Self {
            jobs: Arc::new(Semaphore::new(max_jobs.max(1))),
            gpus: Arc::new(GpuPool {
                all: gpus.len(),
                free: Mutex::new(gpus.iter().copied().collect()),
                freed: Notify::new(),
            }),
        }
    }

    /// A job slot if one is free now: the agent only pops an item it can start.
    pub fn try_job(&self) -> Option<JobSlot> {
        self.jobs
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| JobSlot { _permit: permit })
    }

    pub fn gpu_count(&self) -> usize {
        self.gpus.all
    }

    /// Waits until `count` GPUs are free and takes them (none when the agent has no GPUs).
    /// `Err` when the agent has fewer GPUs than asked for: waiting would never end.
    pub async fn gpus(&self, count: usize) -> Result<GpuLease, usize> {
        let pool = &self.gpus;
        if pool.all == 0 {
            return Ok(GpuLease {
                pool: pool.clone(),
                ids: Vec::new(),
            });
        }
        if count > pool.all {
            return Err(pool.all);
        }
        loop {
            // Registered before looking, so a release between the look and the wait is seen.
            let freed = pool.freed.notified();
            {
                let mut free = pool.free.lock().expect("gpu pool");
                if free.len() >= count {
                    let ids: Vec<usize> = free.iter().copied().take(count).collect();
                    for id in &ids {
                        free.remove(id);
                    }
                    return Ok(GpuLease {
                        pool: pool.clone(),
                        ids,
                    });
                }
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn gpus_go_to_one_job_at_a_time_and_come_back() {
        let slots = Slots::new(4, &[0, 1]);
        let a = slots.gpus(1).await.unwrap();
        let b = slots.gpus(1).await.unwrap();
        assert_eq!(
            (a.visible_devices().unwrap(), b.visible_devices().unwrap()),
            ("0".into(), "1".into())
        );
        let waiting = tokio::time::timeout(Duration::from_millis(50), slots.gpus(1)).await;
        assert!(waiting.is_err(), "a third job must wait");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), slots.gpus(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.visible_devices().as_deref(), Some("0"));
        assert_eq!(slots.gpus(3).await.err(), Some(2));
    }

    #[test]
    fn job_slots_run_out_and_free_on_drop() {
        let slots = Slots::new(1, &[]);
        let first = slots.try_job().unwrap();
        assert!(slots.try_job().is_none());
        drop(first);
        assert!(slots.try_job().is_some());
    }
}
