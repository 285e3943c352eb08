// SPDX-License-Identifier: GPL-2.0
/*
 * One bpf_fib_lookup() per BPF_PROG_TEST_RUN: userspace writes the
 * parameters and flags into `req`, runs the program once, and reads the
 * helper's return code and the parameters it wrote back from `res`.
 * The same lookup runs from a tc and an XDP program, since the helper takes
 * a different path for each.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "fib.h"

char LICENSE[] SEC("license") = "GPL";

struct probe_req {
	struct fib_neigh_params params;
	__u32 flags;
};

struct probe_res {
	struct fib_neigh_params params;
	__s64 rc;
	__u32 runs;
};

struct probe_req req = {};
struct probe_res res = {};

static __always_inline void probe(void *ctx)
{
	struct fib_neigh_params p = req.params;

	res.rc = bpf_fib_lookup(ctx, (struct bpf_fib_lookup *)&p, sizeof(p),
				req.flags);
	res.params = p;
	res.runs++;
}

FIB_TC_AND_XDP(probe, probe)
