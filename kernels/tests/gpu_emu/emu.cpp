// Runs kernels/src/gpu/flow_features.cu as plain C++ on the host: each
// "launch" is a loop over the grid. Reads record batches from stdin and
// writes each batch's feature rows to stdout; the accumulators persist
// between batches as on the device. Used by kernels/tests/gpu_emulation.rs.
#include <cmath>
#include <cstdio>
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

#include "flow_features.cu"

template <typename T>
static bool read_vec(std::vector<T>& v, unsigned long long n) {
    v.resize(n ? n : 1);
    return n == 0 || fread(v.data(), sizeof(T), n, stdin) == n;
}

int main() {
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
        for (u64 t = 0; t < n_short; ++t) {
            blockIdx.x = (unsigned)t;
            process_segments(accs.data(), seg_start.data(), seg_slot.data(), short_segs.data(),
                             (u32)n_short, s_ts.data(), s_payload.data(), s_header.data(),
                             s_window.data(), s_flags.data(), s_kind.data(), fin_meta.data(),
                             activity, rows.data());
        }
        // Role-major threads (7 roles × long segments rounded to a warp),
        // run one after another.
        u64 stride = (n_long + 31) / 32 * 32;
        for (u64 t = 0; t < 7 * stride; ++t) {
            blockIdx.x = (unsigned)t;
            process_long(accs.data(), seg_start.data(), seg_slot.data(), long_segs.data(),
                         (u32)n_long, s_ts.data(), s_payload.data(), s_header.data(),
                         s_window.data(), s_flags.data(), s_kind.data(), activity);
        }
        for (u64 w = 0; w < n_long; ++w) {
            blockIdx.x = (unsigned)w;
            finalize_long(accs.data(), seg_start.data(), seg_slot.data(), long_segs.data(),
                          (u32)n_long, s_kind.data(), s_payload.data(), fin_meta.data(),
                          rows.data());
        }
        fwrite(rows.data(), sizeof(double), nf * NUM_FEATURES, stdout);
        fflush(stdout);
    }
}
