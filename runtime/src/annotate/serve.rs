//! `--serve rtsp://HOST:PORT/PATH`: an in-process gst-rtsp-server on its own
//! GLib main context and thread. Its shared media is
//! `appsrc ! h264parse ! rtph264pay`, fed with the output pipeline's
//! encoded frames (see `Feeds`), so serving costs no second decoder or
//! encoder. Port 0 binds a free port; the bound address is reported.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;

use super::error::AnnotateError;

/// Set by the RTSP server when a new client's media starts: the encoder
/// is asked for a key frame so the client can start decoding.
pub type KeyRequest = Arc<AtomicBool>;

pub const DEFAULT_PORT: u16 = 8554;
pub const DEFAULT_PATH: &str = "/annotated";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeAddress {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl FromStr for ServeAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("rtsp://")
            .ok_or_else(|| format!("{s:?}: expected rtsp://HOST[:PORT][/PATH], e.g. rtsp://0.0.0.0:8554/annotated"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" { DEFAULT_PATH.to_string() } else { path.to_string() };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{s:?}: bad port {p:?}"))?),
            None => (authority, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host (use 0.0.0.0 to serve on every interface)"));
        }
        Ok(ServeAddress { host: host.to_string(), port, path })
    }
}

/// The appsrc of each running RTSP media, and whether it still waits for
/// a key frame to start on.
#[derive(Default)]
pub struct Feeds {
    feeds: Mutex<Vec<Feed>>,
    /// Set when a media starts; the output asks the encoder for a key frame.
    pub key_request: KeyRequest,
}

struct Feed {
    appsrc: glib::WeakRef<gst_app::AppSrc>,
    waiting_key_frame: bool,
}

impl Feeds {
    fn add(&self, appsrc: &gst_app::AppSrc) {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner()).push(Feed { appsrc: appsrc.downgrade(), waiting_key_frame: true });
        self.key_request.store(true, Ordering::Release);
    }

    /// Called on the output's streaming thread with each encoded frame.
    pub fn push(&self, buffer: &gst::BufferRef) {
        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.retain_mut(|feed| {
            let Some(appsrc) = feed.appsrc.upgrade() else { return false };
            if feed.waiting_key_frame && !key {
                return true;
            }
            // Shares the memory; the media's appsrc stamps its own running
            // time (do-timestamp), which starts at each client's start.
            let mut copy = buffer.copy();
            {
                let b = copy.make_mut();
                b.set_pts(gst::ClockTime::NONE);
                b.set_dts(gst::ClockTime::NONE);
            }
            match appsrc.push_buffer(copy) {
                Ok(_) => {
                    feed.waiting_key_frame = false;
                    true
                }
                // Not started yet or paused: keep it and start on a key frame.
                Err(gst::FlowError::Flushing) => {
                    feed.waiting_key_frame = true;
                    true
                }
                Err(_) => false,
            }
        });
    }

    pub fn end(&self) {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        for feed in feeds.iter() {
            if let Some(appsrc) = feed.appsrc.upgrade() {
                let _ = appsrc.end_of_stream();
            }
        }
    }
}

pub struct Server {
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    _source: Option<glib::SourceId>,
    pub url: String,
    pub feeds: Arc<Feeds>,
}

const MEDIA: &str = "( appsrc name=feed is-live=true format=time do-timestamp=true min-latency=0 \
                     ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )";

impl Server {
    pub fn start(addr: &ServeAddress) -> Result<Server, AnnotateError> {
        let bad = |why: String| AnnotateError::BadServe { address: format!("rtsp://{}:{}{}", addr.host, addr.port, addr.path), why };
        let feeds = Arc::new(Feeds::default());
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address(&addr.host);
        server.set_service(&addr.port.to_string());
        let mounts = server.mount_points().ok_or_else(|| bad("the RTSP server has no mount points".into()))?;
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(MEDIA);
        // One media for every client: one feed from the encoder.
        factory.set_shared(true);
        let feeds_cb = feeds.clone();
        factory.connect_media_configure(move |_, media| {
            let bin = media.element();
            let appsrc = bin.downcast_ref::<gst::Bin>().and_then(|b| b.by_name("feed")).and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
            match appsrc {
                Some(appsrc) => {
                    appsrc.set_caps(Some(
                        &gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build(),
                    ));
                    feeds_cb.add(&appsrc);
                }
                None => gst::error!(gst::CAT_DEFAULT, "RTSP media without its appsrc"),
            }
        });
        mounts.add_factory(&addr.path, factory);
        let context = glib::MainContext::new();
        let source = server
            .attach(Some(&context))
            .map_err(|e| bad(format!("cannot listen on {}:{} (port in use, or no such address?): {e}", addr.host, addr.port)))?;
        let port = server.bound_port();
        if port <= 0 {
            return Err(bad("the RTSP server did not bind a port".into()));
        }
        let url = format!("rtsp://{}:{}{}", addr.host, port, addr.path);
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let ml = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || {
                // Keeps the server alive as long as its loop runs.
                let _server = server;
                ml.run();
            })
            .map_err(|e| bad(format!("cannot start the server thread: {e}")))?;
        Ok(Server { main_loop, thread: Some(thread), _source: Some(source), url, feeds })
    }

    pub fn stop(&mut self) {
        self.feeds.end();
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serve_addresses() {
        let a: ServeAddress = "rtsp://127.0.0.1:8554/annotated".parse().unwrap();
        assert_eq!(a, ServeAddress { host: "127.0.0.1".into(), port: 8554, path: "/annotated".into() });
        let a: ServeAddress = "rtsp://0.0.0.0".parse().unwrap();
        assert_eq!((a.port, a.path.as_str()), (DEFAULT_PORT, DEFAULT_PATH));
        assert_eq!("rtsp://localhost:0/a/b".parse::<ServeAddress>().unwrap().path, "/a/b");
        assert!("http://x/".parse::<ServeAddress>().unwrap_err().contains("rtsp://"));
        assert!("rtsp://x:99999/a".parse::<ServeAddress>().unwrap_err().contains("port"));
        assert!("rtsp://:8554/a".parse::<ServeAddress>().unwrap_err().contains("host"));
    }
}
