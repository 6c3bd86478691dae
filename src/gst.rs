//! GStreamer basics shared by ingest and recording: initialisation, element checks and the
//! one formatter of bus errors. A leaf: it uses nothing else of the crate.

use std::sync::OnceLock;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// GStreamer could not be initialised.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot initialise GStreamer: {0}")]
pub struct InitError(String);

static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialises GStreamer once; a failure is reported on every call.
pub fn init() -> Result<(), InitError> {
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string())).clone().map_err(InitError)
}

/// True when this machine's GStreamer registry has the element factory.
pub fn has_element(name: &str) -> bool {
    init().is_ok() && gst::ElementFactory::find(name).is_some()
}

/// An error message from a bus, for logs and health reports: the error, the element that
/// posted it and the debug text (`<error> (from <element>: <debug>)`). The debug text can
/// name a location (URLs are passed as the installer gave them: whoever logs or reports the
/// message redacts it).
pub fn format_error(e: &gst::message::Error) -> String {
    let src = e.src().map(|s| s.name().to_string()).unwrap_or_default();
    match e.debug() {
        Some(d) => format!("{} (from {src}: {d})", e.error()),
        None => format!("{} (from {src})", e.error()),
    }
}

/// The first error on `bus` within `timeout` (zero: only one already posted), formatted
/// with [`format_error`].
pub fn bus_error(bus: &gst::Bus, timeout: Duration) -> Option<String> {
    // (`timed_pop_filtered` with a zero timeout never returns a message in gstreamer-rs 0.25.)
    let msg = if timeout.is_zero() {
        bus.pop_filtered(&[gst::MessageType::Error])?
    } else {
        bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
            &[gst::MessageType::Error],
        )?
    };
    match msg.view() {
        gst::MessageView::Error(e) => Some(format_error(e)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_errors_keep_the_element_and_the_debug_text() {
        if init().is_err() {
            eprintln!("SKIP: GStreamer missing (run `make setup`)");
            return;
        }
        assert!(has_element("fakesink") && !has_element("no-such-element"));
        let pipeline = gst::parse::launch("filesrc name=src location=/no/such/file.mp4 ! fakesink")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let bus = pipeline.bus().unwrap();
        assert!(pipeline.set_state(gst::State::Playing).is_err());
        let e = bus_error(&bus, Duration::from_millis(500)).expect("an error on the bus");
        let _ = pipeline.set_state(gst::State::Null);
        assert!(e.contains("(from src: "), "{e}");
        assert!(e.contains("/no/such/file.mp4"), "the debug text names the file: {e}");
        assert_eq!(bus_error(&bus, Duration::ZERO), None, "taken off the bus");
    }
}
