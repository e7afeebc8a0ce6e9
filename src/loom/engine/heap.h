// The host heap of a long-running server (glibc malloc), kept from growing without end.
//
// Measured by scripts/soak.py on the CPU (issue 15): glibc raises its mmap threshold to the size of
// each large block freed (up to 32 MiB), so a busy server's per-step host tensors (the f32 logits
// are 0.6 MB per row of a 152K vocabulary) come to live in the heap, where their varying sizes
// fragment it: RSS grew ~100 MB every 300 requests at concurrency 16, without end, while the live
// heap stayed flat. With the threshold fixed, what remains is the free memory the arenas of the
// engine and HTTP threads keep (a few MB per thousand requests); the idle engine hands it back.
#pragma once

namespace loom::engine {

// Blocks of 1 MiB and more get their own mappings, returned to the system when freed (unless a
// free stretch of the heap already fits them). Process-wide: `loom serve` calls it first thing.
void bound_heap_fragmentation();

// Returns the heap's free pages to the system (malloc_trim); the Engine calls it once it has been
// idle for EngineOptions::release_heap_after_idle.
void release_free_heap();

}  // namespace loom::engine
