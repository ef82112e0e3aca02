//! A logger that keeps every record of the test binary, for tests that check what the crate
//! logs. Installed on first use, at trace level; one per binary.

use std::sync::{Mutex, OnceLock};

/// One record: level, target and message.
pub type Record = (log::Level, String, String);

struct Capture(Mutex<Vec<Record>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push((
            record.level(),
            record.target().to_string(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    })
}

/// Installs the logger (so that what follows is recorded).
pub fn install() {
    capture();
}

/// The records so far whose message contains `needle`.
pub fn records_mentioning(needle: &str) -> Vec<Record> {
    capture()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, m)| m.contains(needle))
        .cloned()
        .collect()
}
