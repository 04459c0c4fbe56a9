//! A `#![no_std]` consumer of redlock-core. See Cargo.toml.
#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

use redlock_core::{Config, Instant, NodeConfig, NodeId, Redlock};

/// A bump allocator over a static arena: enough for redis-protocol's error
/// paths; the probe only has to link.
struct Bump;
static NEXT: AtomicUsize = AtomicUsize::new(0);
static mut ARENA: [u8; 1 << 16] = [0; 1 << 16];

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        let start = (NEXT.load(Ordering::Relaxed) + align - 1) & !(align - 1);
        let end = start + layout.size();
        if end > 1 << 16 {
            return core::ptr::null_mut();
        }
        NEXT.store(end, Ordering::Relaxed);
        unsafe { (&raw mut ARENA as *mut u8).add(start) }
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Drives the core once so that it is really linked in.
#[no_mangle]
pub extern "C" fn redlock_probe(out: *mut u8, len: usize) -> usize {
    let nodes = [NodeConfig::default()];
    let Ok(mut core) = Redlock::<4, 16>::new(Config::new(Duration::from_secs(1)), &nodes) else {
        return 0;
    };
    core.handle_connected(NodeId(0), Instant::ZERO);
    core.handle_input(NodeId(0), b"+OK\r\n", Instant::from_millis(1));
    let buf = unsafe { core::slice::from_raw_parts_mut(out, len) };
    match core.poll_transmit(buf) {
        Some(t) => t.len,
        None => 0,
    }
}
