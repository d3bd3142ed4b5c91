//! The kernel heap: `linked_list_allocator` behind a `spin` lock, as the global
//! allocator, shared by all CPUs. The kernel runs with interruptions disabled except
//! inside waits (console, I/O, idle) and the watchdog's timer, and no interruption handler
//! allocates, so the lock can never be taken re-entrantly. The lock records its holder, so
//! that the lock of a CPU the watchdog stopped can be released ([`release_held_by`]).

use super::percpu::CpuNr;
use super::sync::CpuMutex;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;

/// The global allocator.
pub struct KernelHeap(CpuMutex<Heap>);

impl core::fmt::Debug for KernelHeap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KernelHeap")
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(CpuMutex::new(Heap::empty()));

/// Hands `size` bytes at physical address `start` to the heap, once, at boot. The kernel
/// calls it with a range above the image and the initrd and below the end of memory,
/// which nothing else uses; later calls are ignored.
pub fn init_region(start: u64, size: u64) {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    // SAFETY: see above: the range is unused memory, identity-mapped, and from now on
    // owned by the heap alone.
    unsafe { HEAP.0.lock().init(start as *mut u8, size as usize) };
}

/// Releases the heap's lock if CPU `cpu` holds it (a CPU that was stopped, see
/// [`CpuMutex::release_held_by`]).
pub fn release_held_by(cpu: CpuNr) {
    HEAP.0.release_held_by(cpu);
}

/// Bytes in use and free.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.0.lock();
    (heap.used(), heap.free())
}

// SAFETY: allocation and deallocation are delegated to `linked_list_allocator::Heap`
// under a lock; memory handed out is never handed out twice.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: `ptr` was returned by `alloc` with this layout (GlobalAlloc contract).
            unsafe { self.0.lock().deallocate(ptr, layout) };
        }
    }
}
