//! The one table of port windows: every test repository's `ports.base`
//! comes from here, so no two tests of the run ever share a port.
//!
//! [`window`] hands out windows from [`FIRST`] up, each exactly as long as
//! the repository's blocks need ([`span`]: `threads.max + 1` blocks of
//! `ports.block_size`, which is how far iso may go from its base). The
//! suites are modules of one test binary and run as threads of one
//! process, so one process-wide table is enough. A test repository gives
//! its window back when it is dropped ([`release`]), and a window given
//! back is handed out again only while none of its ports is bound (a
//! container of the old test that is still going away keeps its window
//! out): the suite has more tests than the range below the ephemeral ports
//! has windows for, but never two live tests on one port.
//!
//! All windows are
//! - below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`,
//!   32768-60999 here, checked at run time), so no client socket of any
//!   process ever holds a port of a test block;
//! - above iso's default window (base 10000, 10 blocks of 100: ports
//!   10000-11099), which is handed out only by [`iso_defaults`], to one test
//!   at a time, for the tests whose expected values are iso's default
//!   ports (the Nushell plugin's documented examples).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// iso's default `threads.max` and `ports.block_size` (host/src/config.rs;
/// [`defaults_are_isos`] checks them against the real binary).
const DEFAULT_MAX: u32 = 10;
const DEFAULT_BLOCK_SIZE: u32 = 100;
/// iso's default `ports.base`.
const ISO_DEFAULT_BASE: u16 = 10000;

/// The first port of the first window: just past iso's default window
/// (10000-11099), where a developer's real threads live too. The whole run
/// takes about 19,000 of the 21,668 ports from here to 32767.
const FIRST: u32 = ISO_DEFAULT_BASE as u32 + (DEFAULT_MAX + 1) * DEFAULT_BLOCK_SIZE;

static NEXT: AtomicU32 = AtomicU32::new(FIRST);
/// Windows given back, `(start, len)`.
static FREE: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());

/// Whether no socket is bound to a port of `start..start + len` (a
/// listener on 0.0.0.0 conflicts with one on any address).
fn unbound(start: u32, len: u32) -> bool {
    (start..start + len).all(|p| std::net::TcpListener::bind(("0.0.0.0", p as u16)).is_ok())
}

/// Give a window back (see the module's comment).
pub fn release(start: u16, len: u32) {
    FREE.lock().unwrap_or_else(|p| p.into_inner()).push((u32::from(start), len));
}

/// The base of a new window of `len` ports that no other test holds.
///
/// Panics when the windows would reach the kernel's ephemeral range: make
/// the tests' repositories smaller (`threads.max`, `ports.block_size`)
/// rather than moving the windows up.
pub fn window(len: u32) -> u16 {
    assert!(len > 0, "a port window of no ports");
    {
        let mut free = FREE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = free.iter().position(|&(s, l)| l >= len && unbound(s, len)) {
            let (s, l) = free.swap_remove(i);
            if l > len {
                free.push((s + len, l - len));
            }
            return u16::try_from(s).unwrap();
        }
    }
    let start = NEXT.fetch_add(len, Ordering::Relaxed);
    let end = start + len;
    let limit = ephemeral_start();
    assert!(
        end <= limit,
        "port window {start}-{} would reach the kernel's ephemeral range ({limit}+); the test windows ({FIRST}-{limit}) are used up",
        end - 1
    );
    u16::try_from(start).unwrap()
}

/// How many ports a repository whose iso.toml contains `toml` may use from
/// its base: `threads.max + 1` blocks of `ports.block_size` (iso's
/// defaults for what the file does not set).
pub fn span(toml: &str) -> u32 {
    let table: toml::Table = toml.parse().unwrap_or_else(|e| panic!("a test's iso.toml is not TOML ({e}):\n{toml}"));
    let int = |section: &str, key: &str, default: u32| {
        table.get(section).and_then(|s| s.get(key)).and_then(toml::Value::as_integer).map_or(default, |v| u32::try_from(v).unwrap())
    };
    (int("threads", "max", DEFAULT_MAX) + 1) * int("ports", "block_size", DEFAULT_BLOCK_SIZE)
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u32 {
    static START: OnceLock<u32> = OnceLock::new();
    *START.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|text| text.split_whitespace().next()?.parse().ok()).unwrap_or(32768)
    })
}

/// iso's default window, held by one test at a time.
pub struct IsoDefaults {
    pub base: u16,
    _turn: MutexGuard<'static, ()>,
}

/// Wait for iso's default window (base 10000) and hold it until the result
/// is dropped: keep it alive as long as the repository that uses it. The
/// tests that use it take turns, as at the same time one test's port probe
/// could make another skip a block.
pub fn iso_defaults() -> IsoDefaults {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    IsoDefaults { base: ISO_DEFAULT_BASE, _turn: turn }
}

/// The defaults [`span`] assumes are the real binary's, and so are iso's
/// default window and the window of an empty iso.toml.
#[test]
fn defaults_are_isos() {
    let turn = iso_defaults();
    let repo = super::TestRepo::with_iso_defaults(&turn, "");
    repo.write("iso.toml", "");
    let config = repo.iso_json(&["config"]);
    let config = &config["config"];
    assert_eq!(config["threads"]["max"], DEFAULT_MAX, "{config}");
    assert_eq!(config["ports"]["block_size"], DEFAULT_BLOCK_SIZE, "{config}");
    assert_eq!(config["ports"]["base"], ISO_DEFAULT_BASE, "{config}");
    assert_eq!(span(""), 1100);
    assert_eq!(span("[threads]\nmax = 3\n[ports]\nblock_size = 10\n"), 40);
}
