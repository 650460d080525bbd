//! A background thread that runs a task periodically until dropped, and stops promptly.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sync;

/// Runs `tick` every `interval` on its own thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Periodic {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Periodic {
    pub(crate) fn spawn(
        name: &str,
        interval: Duration,
        mut tick: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                tick();
                let (lock, cv) = &*flag;
                // Wakes early when told to stop, so shutdown never waits a whole interval.
                let guard =
                    sync::wait_timeout_while(cv, sync::lock(lock), interval, |stopped| !*stopped);
                if *guard {
                    return;
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *sync::lock(lock) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
