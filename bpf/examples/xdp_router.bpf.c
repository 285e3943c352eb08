// SPDX-License-Identifier: GPL-2.0
/*
 * An XDP router fast path built on fib_neigh.h: on a kernel with the
 * series, bpf_redirect() while the neighbour is connected and XDP_PASS (the
 * stack re-validates the entry) otherwise; on any other kernel the loader's
 * fallback: every packet to the stack (the default) or, as before the
 * series, bpf_redirect() with the cached MACs. The same object file does
 * both; libbpf picks the branch at load time.
 *
 *   ip link set dev eth0 xdp obj xdp_router.bpf.o sec xdp
 */
#include <linux/bpf.h>
#include "fib_neigh.h"
#include "example_stats.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader (defaults: the state-aware mode, pass as fallback). */
const volatile enum fib_neigh_mode mode = FIB_NEIGH_MODE_STATE_AWARE;
const volatile enum fib_neigh_fallback fallback = FIB_NEIGH_FALLBACK_PASS;

SEC("xdp")
int xdp_router(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct fib_neigh fn = {};
	void *l3 = eth + 1;
	__u32 l3_len;
	int ok = 0;

	/* Broadcast and multicast frames are the stack's. */
	if ((void *)(eth + 1) > data_end || (eth->h_dest[0] & 1))
		return XDP_PASS;
	l3_len = data_end - l3;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		ok = fib_neigh_fill_v4(&fn, l3, data_end, l3_len,
				       ctx->ingress_ifindex);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		ok = fib_neigh_fill_v6(&fn, l3, data_end, l3_len,
				       ctx->ingress_ifindex);
	if (!ok)
		return XDP_PASS;

	fib_neigh_decide(ctx, &fn, mode, fallback, 1);
	example_count(&fn);
	if (fn.action != FIB_NEIGH_PASS)
		fib_neigh_dec_ttl(&fn, l3, data_end);
	return fib_neigh_act_xdp(&fn, eth, data_end);
}
