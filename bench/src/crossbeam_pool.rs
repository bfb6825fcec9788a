//! The smallest reasonable pool: N threads receiving boxed closures from
//! one unbounded crossbeam channel. It is the floor any pool with futures
//! is measured against, since ours uses the same channel underneath.

use std::thread::{self, JoinHandle};

use crossbeam_channel::Sender;

use crate::peers::Pool;

type Job = Box<dyn FnOnce() + Send>;

pub struct CrossbeamPool {
    /// `None` only while dropping: closing the channel stops the workers.
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl CrossbeamPool {
    fn execute(&self, job: Job) {
        self.jobs
            .as_ref()
            .expect("open until drop")
            .send(job)
            .expect("the workers outlive the sender");
    }
}

impl Pool for CrossbeamPool {
    type Handle = oneshot::Receiver<u64>;

    fn with_workers(workers: usize) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        let workers = (0..workers)
            .map(|_| {
                let receiver = receiver.clone();
                thread::spawn(move || receiver.iter().for_each(|job| job()))
            })
            .collect();
        CrossbeamPool {
            jobs: Some(sender),
            workers,
        }
    }

    fn spawn(&self, task: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        let (sender, receiver) = oneshot::channel();
        self.execute(Box::new(move || {
            let _ = sender.send(task());
        }));
        receiver
    }

    fn join(&self, handle: Self::Handle) -> u64 {
        handle.recv().expect("the task ran")
    }
}

impl Drop for CrossbeamPool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
