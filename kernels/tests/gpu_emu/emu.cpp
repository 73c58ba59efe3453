// Runs kernels/src/gpu/flow_features.cu as plain C++ on the host: each
// "launch" is a loop over the grid. Reads record batches from stdin and
// writes each batch's feature rows to stdout; the accumulators persist
// between batches as on the device. Used by kernels/tests/gpu_emulation.rs.
//
// Warps that use shuffles and votes (the long segments) run as 32
// coroutines, one per lane: a lane runs until its next warp operation, and
// when all 32 are waiting at it the operation is carried out and they go
// on. A lane that leaves while others wait, or lanes waiting at different
// operations, abort the emulator (the kernel's warp code must be uniform).
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#define TS_DEVICE static inline
#define TS_KERNEL static
struct Dim3 {
    unsigned x;
};
static Dim3 blockIdx, blockDim, threadIdx;
using std::sqrt;
using std::trunc;

// Long-segment role walks, and those that fell back to one record at a time
// (totals so far, printed after every batch when TS_EMU_STATS is set).
static unsigned long long role_walks[7], role_fallbacks[7];
#define TS_NOTE_WALK(role, lane) \
    do {                         \
        if ((lane) == 0) role_walks[role] += 1; \
    } while (0)
#define TS_NOTE_FALLBACK(role, lane) \
    do {                             \
        if ((lane) == 0) role_fallbacks[role] += 1; \
    } while (0)

#include "flow_features.cu"

static void print_stats() {
    if (!getenv("TS_EMU_STATS")) return;
    fprintf(stderr, "long walks (fallbacks) by role:");
    for (int r = 0; r < 7; ++r) fprintf(stderr, " %llu (%llu)", role_walks[r], role_fallbacks[r]);
    fprintf(stderr, "\n");
}

// ------------------------------------------------------------ lane switching
// Callee-saved registers and the stack pointer only (x86-64 System V).
#if defined(__x86_64__)
asm(R"(
.pushsection .text
.globl ts_emu_switch
.type ts_emu_switch, @function
ts_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size ts_emu_switch, .-ts_emu_switch
.popsection
)");
extern "C" void ts_emu_switch(void** save_sp, void* load_sp);
#else
#error "the warp emulator switches lanes with x86-64 code"
#endif

struct WarpEmu {
    void* main_sp = nullptr;
    void* sp[32];
    std::vector<char> stack[32];
    bool finished[32];
    bool waiting[32];
    u64 bits[32];
    u32 arg[32];
    int op[32];
    u64 out[32];
    int cur = -1;
    unsigned block = 0;
    unsigned first_thread = 0;
    void (*body)() = nullptr;
};
static WarpEmu E;

u64 ts_emu_exchange(u64 bits, u32 arg, int op) {
    int l = E.cur;
    if (l < 0) {
        fprintf(stderr, "warp operation outside an emulated warp\n");
        abort();
    }
    E.bits[l] = bits;
    E.arg[l] = arg;
    E.op[l] = op;
    E.waiting[l] = true;
    ts_emu_switch(&E.sp[l], E.main_sp);
    return E.out[l];
}

static void lane_entry() {
    E.body();
    E.finished[E.cur] = true;
    ts_emu_switch(&E.sp[E.cur], E.main_sp);
    abort();  // a finished lane is never resumed
}

// Runs `body` as the 32 lanes of the warp starting at `first_thread` of
// `block`.
static void run_warp(unsigned block, unsigned first_thread, void (*body)()) {
    E.block = block;
    E.first_thread = first_thread;
    E.body = body;
    for (int l = 0; l < 32; ++l) {
        E.stack[l].resize(1 << 20);
        E.finished[l] = false;
        E.waiting[l] = false;
        // The first switch "returns" into lane_entry with the stack aligned
        // as after a call.
        uintptr_t top = ((uintptr_t)(E.stack[l].data() + E.stack[l].size())) & ~(uintptr_t)15;
        void** sp = (void**)top;
        *--sp = nullptr;                 // lane_entry's return address (unused)
        *--sp = (void*)&lane_entry;      // where ts_emu_switch returns to
        for (int r = 0; r < 6; ++r) *--sp = nullptr;  // rbp rbx r12..r15
        E.sp[l] = sp;
    }
    for (;;) {
        int waiting = 0, finished = 0;
        for (int l = 0; l < 32; ++l) {
            if (E.finished[l]) {
                ++finished;
                continue;
            }
            E.cur = l;
            blockIdx.x = block;
            threadIdx.x = first_thread + (unsigned)l;
            ts_emu_switch(&E.main_sp, E.sp[l]);
            E.cur = -1;
            if (E.finished[l]) {
                ++finished;
            } else {
                ++waiting;
            }
        }
        if (finished == 32) return;
        if (finished != 0) {
            fprintf(stderr, "lanes left the warp while others wait at a warp operation\n");
            abort();
        }
        for (int l = 1; l < 32; ++l) {
            if (E.op[l] != E.op[0]) {
                fprintf(stderr, "lanes wait at different warp operations\n");
                abort();
            }
        }
        u64 vote = 0;
        for (int l = 0; l < 32; ++l) vote |= (E.bits[l] & 1ULL) << l;
        for (int l = 0; l < 32; ++l) {
            switch (E.op[l]) {
                case 0: E.out[l] = E.bits[E.arg[l] & 31]; break;
                case 1: E.out[l] = E.bits[(l ^ E.arg[l]) & 31]; break;
                default: E.out[l] = vote; break;
            }
            E.waiting[l] = false;
        }
    }
}

// process_batch's arguments, for the lanes to pick up.
struct Launch {
    char* accs;
    const u32* seg_start;
    const u32* seg_slot;
    const u32* short_segs;
    u32 n_short;
    const u32* long_segs;
    u32 n_long;
    u32 long_blocks;
    const i64* ts;
    const u32* payload;
    const u16* header;
    const u16* window;
    const u8* flags;
    const u8* kind;
    const u64* fin_meta;
    i64 activity;
    double* rows;
};
static const Launch* launch = nullptr;

static void run_launch() {
    const Launch& a = *launch;
    process_batch(a.accs, a.seg_start, a.seg_slot, a.short_segs, a.n_short, a.long_segs,
                  a.n_long, a.long_blocks, a.ts, a.payload, a.header, a.window, a.flags, a.kind,
                  a.fin_meta, a.activity, a.rows);
}

template <typename T>
static bool read_vec(std::vector<T>& v, unsigned long long n) {
    v.resize(n ? n : 1);
    return n == 0 || fread(v.data(), sizeof(T), n, stdin) == n;
}

// `emu model-input`: reads n, width, external (u64 each), n feature rows,
// width column indices (u32), width means and width scales (f64); writes
// the n × width model input (f32).
static int model_input_mode() {
    unsigned long long hdr[3];
    if (fread(hdr, sizeof hdr[0], 3, stdin) != 3) return 2;
    u64 n = hdr[0], width = hdr[1], external = hdr[2];
    std::vector<double> rows, mean, scale;
    std::vector<u32> cols;
    if (!read_vec(rows, n * NUM_FEATURES) || !read_vec(cols, width) || !read_vec(mean, width) ||
        !read_vec(scale, width)) {
        return 2;
    }
    std::vector<float> out(n * width + 1, 0.0f);
    blockDim.x = 256;
    u64 total = n * width;
    for (u64 b = 0; b * 256 < total; ++b) {
        for (unsigned t = 0; t < 256; ++t) {
            blockIdx.x = (unsigned)b;
            threadIdx.x = t;
            model_input(rows.data(), (u32)n, cols.data(), (u32)width, mean.data(), scale.data(),
                        (u32)external, out.data());
        }
    }
    fwrite(out.data(), sizeof(float), total, stdout);
    return 0;
}

// `emu flag-scores`: reads n, cols, benign, score_class and the threshold's
// f32 bits (u64 each), then n × cols f32 outputs; writes the count (u32)
// and the count × 3 flagged values (u32). Blocks and threads run last to
// first, so the compacted order is not the row order (the host sorts).
static int flag_scores_mode() {
    unsigned long long hdr[5];
    if (fread(hdr, sizeof hdr[0], 5, stdin) != 5) return 2;
    u64 n = hdr[0], cols = hdr[1];
    u32 benign = (u32)hdr[2], score_class = (u32)hdr[3];
    float threshold = f32_from_bits((u32)hdr[4]);
    std::vector<float> out;
    if (!read_vec(out, n * cols)) return 2;
    std::vector<u32> flagged(3 * n + 3, 0);
    u32 count = 0;
    blockDim.x = 256;
    u64 blocks = (n + 255) / 256;
    for (u64 b = blocks; b-- > 0;) {
        for (unsigned t = 256; t-- > 0;) {
            blockIdx.x = (unsigned)b;
            threadIdx.x = t;
            flag_scores(out.data(), (u32)n, (u32)cols, benign, score_class, threshold, &count,
                        (u32)n, flagged.data());
        }
    }
    fwrite(&count, sizeof count, 1, stdout);
    fwrite(flagged.data(), sizeof(u32), 3 * (u64)count, stdout);
    return 0;
}

int main(int argc, char** argv) {
    if (argc > 1 && strcmp(argv[1], "model-input") == 0) return model_input_mode();
    if (argc > 1 && strcmp(argv[1], "flag-scores") == 0) return flag_scores_mode();

    std::vector<char> accs;
    for (;;) {
        // records, segments, finalized, slots, activity timeout, short, long
        unsigned long long hdr[7];
        if (fread(hdr, sizeof hdr[0], 7, stdin) != 7) return 0;
        u64 n = hdr[0], segs = hdr[1], nf = hdr[2], slots = hdr[3];
        i64 activity = (i64)hdr[4];
        u64 n_short = hdr[5], n_long = hdr[6];
        std::vector<u32> seg, rank, payload, seg_start, seg_slot;
        std::vector<i64> ts;
        std::vector<u16> header, window;
        std::vector<u8> flags, kind;
        std::vector<u64> fin_meta;
        std::vector<u32> short_segs, long_segs;
        if (!read_vec(seg, n) || !read_vec(rank, n) || !read_vec(ts, n) || !read_vec(payload, n) ||
            !read_vec(header, n) || !read_vec(window, n) || !read_vec(flags, n) ||
            !read_vec(kind, n) || !read_vec(seg_start, segs + 1) ||
            !read_vec(seg_slot, segs) || !read_vec(fin_meta, nf) ||
            !read_vec(short_segs, n_short) || !read_vec(long_segs, n_long)) {
            fprintf(stderr, "short batch\n");
            return 2;
        }
        if (accs.size() < slots * ACC_STRIDE) accs.resize(slots * ACC_STRIDE, 0);
        std::vector<u32> perm(n ? n : 1);
        blockDim.x = 1;
        threadIdx.x = 0;
        for (u64 i = 0; i < n; ++i) {
            blockIdx.x = (unsigned)i;
            build_perm(seg.data(), rank.data(), seg_start.data(), perm.data(), (u32)n);
        }
        std::vector<i64> s_ts(n ? n : 1);
        std::vector<u32> s_payload(n ? n : 1);
        std::vector<u16> s_header(n ? n : 1), s_window(n ? n : 1);
        std::vector<u8> s_flags(n ? n : 1), s_kind(n ? n : 1);
        for (u64 j = 0; j < n; ++j) {
            blockIdx.x = (unsigned)j;
            gather(perm.data(), (u32)n, ts.data(), payload.data(), header.data(), window.data(),
                   flags.data(), kind.data(), s_ts.data(), s_payload.data(), s_header.data(),
                   s_window.data(), s_flags.data(), s_kind.data());
        }
        std::vector<double> rows(nf * NUM_FEATURES + 1, 0.0);
        // process_batch's grid (kernels/src/gpu/mod.rs long_blocks, block
        // 128): the long segments' blocks, then one thread per short segment,
        // every thread run one after another.
        const unsigned block = 128;
        u64 long_blocks = (7 * n_long * 32 + block - 1) / block;
        u64 short_blocks = (n_short + block - 1) / block;
        blockDim.x = block;
        static Launch L;
        L = Launch{accs.data(), seg_start.data(), seg_slot.data(), short_segs.data(),
                   (u32)n_short, long_segs.data(), (u32)n_long, (u32)long_blocks,
                   s_ts.data(), s_payload.data(), s_header.data(), s_window.data(),
                   s_flags.data(), s_kind.data(), fin_meta.data(), activity, rows.data()};
        launch = &L;
        for (u64 b = 0; b < long_blocks; ++b) {
            for (unsigned w = 0; w < block; w += 32) run_warp((unsigned)b, w, &run_launch);
        }
        for (u64 b = long_blocks; b < long_blocks + short_blocks; ++b) {
            for (unsigned t = 0; t < block; ++t) {
                blockIdx.x = (unsigned)b;
                threadIdx.x = t;
                run_launch();
            }
        }
        blockDim.x = 1;
        threadIdx.x = 0;
        for (u64 w = 0; w < n_long; ++w) {
            blockIdx.x = (unsigned)w;
            finalize_long(accs.data(), seg_start.data(), seg_slot.data(), long_segs.data(),
                          (u32)n_long, s_kind.data(), s_payload.data(), fin_meta.data(),
                          rows.data());
        }
        fwrite(rows.data(), sizeof(double), nf * NUM_FEATURES, stdout);
        fflush(stdout);
        print_stats();
    }
}
