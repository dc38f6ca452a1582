//! Large files: a 1 GiB (sparse) file streamed with bounded memory, and
//! concurrent downloads that all progress. Its own test binary, so this
//! process's RSS measures ferry's streaming and nothing else.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use http_body_util::BodyExt;
use tempfile::TempDir;

/// The tests run one at a time: the RSS test must see no other download.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn proxy_for(dir: &TempDir) -> TestProxy {
    TestProxy::start(
        &ProxyToml::new()
            .tls_listener()
            .route_keys(&format!(
                "name = \"files\"\npath_prefix = \"/\"\nstatic = {{ root = {:?} }}",
                dir.path().display().to_string()
            ))
            .build(),
    )
    .await
}

/// Downloads `path`, calling `progress(bytes so far)` per chunk; returns the byte count.
async fn download(c: &mut Client, path: &str, mut progress: impl FnMut(u64)) -> u64 {
    let req = request("GET", "localhost", path, c.is_h2())
        .body(empty())
        .unwrap();
    let res = c.send(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut n = 0u64;
    while let Some(frame) = within(body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
            progress(n);
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().unwrap();
    std::fs::File::create(dir.path().join("big.bin"))
        .unwrap()
        .set_len(GIB)
        .unwrap();
    let proxy = proxy_for(&dir).await;
    let mut c = proxy.client(Proto::H1).await;
    // Warm up (TLS buffers, the blocking pool's threads) before the baseline.
    download(&mut c, "/big.bin", |_| {}).await;
    let before = rss_kib();
    let mut peak = before;
    let mut samples = 0;
    let n = download(&mut c, "/big.bin", |n| {
        if n % (16 * MIB) < 256 * 1024 {
            peak = peak.max(rss_kib());
            samples += 1;
        }
    })
    .await;
    assert_eq!(n, GIB);
    assert!(samples > 10, "{samples} samples");
    let growth = (peak - before) * 1024;
    eprintln!("RSS {before} KiB before, peak {peak} KiB, over {samples} samples");
    assert!(growth < 16 * MIB, "RSS grew by {} KiB", growth / 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_downloads_all_progress() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new().unwrap();
    let size = 128 * MIB;
    std::fs::File::create(dir.path().join("big.bin"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let proxy = Arc::new(proxy_for(&dir).await);
    const N: usize = 4;
    // (when each download got its first MiB, when it finished)
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..N {
        let proxy = proxy.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
            let mut c = proxy.client(proto).await;
            let mut first = None;
            let n = download(&mut c, "/big.bin", |n| {
                if first.is_none() && n >= MIB {
                    first = Some(Instant::now());
                }
            })
            .await;
            events
                .lock()
                .unwrap()
                .push((first.unwrap(), Instant::now()));
            n
        }));
    }
    for t in tasks {
        assert_eq!(within(t).await.unwrap(), size);
    }
    let events = events.lock().unwrap();
    let last_first_mib = events.iter().map(|e| e.0).max().unwrap();
    let first_done = events.iter().map(|e| e.1).min().unwrap();
    assert!(
        last_first_mib < first_done,
        "a download finished before another had its first MiB"
    );
}
