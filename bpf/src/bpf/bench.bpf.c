// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark programs, driven by BPF_PROG_TEST_RUN.
 *
 * Lookup cost: lookup_tc / lookup_xdp call bpf_fib_lookup() LOOKUPS_PER_RUN
 * times per run with the parameters and flags userspace put in `lk`, so the
 * kernel's per-run duration (whole nanoseconds) divided by LOOKUPS_PER_RUN
 * has sub-nanosecond resolution. copy_tc / copy_xdp do the same work
 * without the helper call: the floor under every lookup figure. Every
 * lookup's return code is checked against `lk.expect_rc`; mismatches are
 * counted so a figure of a lookup that failed is never reported as one of
 * a lookup that succeeded.
 *
 * Forwarding rate: gen_xdp is a traffic generator for XDP live-frame test
 * runs (BPF_F_TEST_XDP_LIVE_FRAMES): each run rewrites the whole frame from
 * `gen.frame` (frames are recycled, and the forwarder downstream changes
 * TTL and MACs), steps the flow (destination address and source port), and
 * returns XDP_TX, which the kernel turns into a transmit on the test run's
 * ingress device. sink_xdp counts what arrives and drops it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fib.h"

char LICENSE[] SEC("license") = "GPL";

#define LOOKUPS_PER_RUN	64
#define GEN_FRAME_LEN	60	/* 64 bytes on the wire with the FCS */

struct lookup_req {
	struct fib_neigh_params params;
	__u32 flags;
	__s32 expect_rc;
};

struct lookup_req lk = {};
/* lookups whose rc differed from expect_rc, and the last such rc */
__u64 lk_mismatches = 0;
__s64 lk_last_bad_rc = 0;
/* what the last lookup wrote back (nud_state, dmac) */
struct fib_neigh_params lk_last = {};

static __always_inline void lookups(void *ctx)
{
	struct fib_neigh_params p;
	long rc;
	int i;

	for (i = 0; i < LOOKUPS_PER_RUN; i++) {
		p = lk.params;
		rc = bpf_fib_lookup(ctx, (struct bpf_fib_lookup *)&p, sizeof(p),
				    lk.flags);
		if (rc != lk.expect_rc) {
			lk_mismatches++;
			lk_last_bad_rc = rc;
		}
	}
	lk_last = p;
}

/* The loop and the copy without the helper call (ctx unused). */
static __always_inline void copies(void *ctx)
{
	struct fib_neigh_params p;
	int i;

	for (i = 0; i < LOOKUPS_PER_RUN; i++) {
		p = lk.params;
		/* keep the copy: the compiler may not drop it */
		asm volatile("" : : "r"(&p) : "memory");
	}
}

FIB_TC_AND_XDP(lookup, lookups)

FIB_TC_AND_XDP(copy, copies)

/* ---- traffic generator and sink ------------------------------------- */

struct gen_cfg {
	__u8 frame[GEN_FRAME_LEN];	/* Ethernet + IPv4 + UDP, checksum 0 */
	__u32 dsts;			/* destinations: daddr + 0 .. dsts-1 */
	__u32 sports;			/* source ports: sport + 0 .. sports-1 */
};

struct gen_cfg gen = {};
__u64 gen_runs = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

static __always_inline __u16 ip_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

	for (i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

SEC("xdp")
int gen_xdp(struct xdp_md *xdp)
{
	void *data_end = (void *)(long)xdp->data_end;
	void *data = (void *)(long)xdp->data;
	__u32 n = gen_runs++;
	struct udphdr *udp;
	struct iphdr *ip;
	__u32 dsts, sports;

	if (data + GEN_FRAME_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, gen.frame, GEN_FRAME_LEN);
	ip = data + sizeof(struct ethhdr);
	udp = (void *)(ip + 1);
	dsts = gen.dsts ? gen.dsts : 1;
	sports = gen.sports ? gen.sports : 1;
	ip->daddr = bpf_htonl(bpf_ntohl(ip->daddr) + n % dsts);
	udp->source = bpf_htons(bpf_ntohs(udp->source) + (n / dsts) % sports);
	ip->check = 0;
	ip->check = ip_csum(ip);
	return XDP_TX;
}

/* Counts and drops. Bench::live_frames() runs it as a live-frames test
 * run to ask whether the kernel allows those: that sends nothing only
 * because this returns XDP_DROP, always.
 */
SEC("xdp")
int sink_xdp(struct xdp_md *xdp)
{
	__u32 key = 0;
	__u64 *c = bpf_map_lookup_elem(&sink_count, &key);

	if (c)
		*c += 1;
	return XDP_DROP;
}
