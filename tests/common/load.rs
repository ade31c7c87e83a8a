//! A writer that measures how long each small write waits: the tests' view
//! of "how long were writers blocked".

use mysql::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Inserts into `table` in a loop; `stop()` returns the worst wait it saw.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Duration>,
}

impl Writer {
    pub fn start(opts: mysql::Opts, table: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let insert = format!("INSERT INTO {table} VALUES (1)");
        let handle = std::thread::spawn(move || {
            let mut c = mysql::Conn::new(opts).unwrap();
            let mut worst = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.query_drop(&insert).unwrap();
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        });
        Writer { stop, handle }
    }

    pub fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}
