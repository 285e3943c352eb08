// SPDX-License-Identifier: GPL-2.0
/*
 * A tc router fast path built on fib_neigh.h: on a kernel with the series,
 * bpf_redirect() while the neighbour is connected and bpf_redirect_neigh()
 * otherwise; on any other kernel, bpf_redirect_neigh() for every packet.
 * The same object file does both; libbpf picks the branch at load time.
 *
 *   tc qdisc add dev eth0 clsact
 *   tc filter add dev eth0 ingress bpf direct-action \
 *           obj tc_router.bpf.o sec tc
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include "fib_neigh.h"
#include "example_stats.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader (defaults: the state-aware mode). */
const volatile enum fib_neigh_mode mode = FIB_NEIGH_MODE_STATE_AWARE;
const volatile enum fib_neigh_fallback fallback = FIB_NEIGH_FALLBACK_NEIGH;

SEC("tc")
int tc_router(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	void *data = (void *)(long)skb->data;
	struct ethhdr *eth = data;
	struct fib_neigh fn = {};
	void *l3 = eth + 1;
	__u32 l3_len;
	int ok = 0;

	/* Only frames addressed to this host, unicast: ours to route. */
	if ((void *)(eth + 1) > data_end || skb->pkt_type != 0)
		return TC_ACT_OK;
	l3_len = skb->len - sizeof(*eth);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		ok = fib_neigh_fill_v4(&fn, l3, data_end, l3_len,
				       skb->ingress_ifindex);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		ok = fib_neigh_fill_v6(&fn, l3, data_end, l3_len,
				       skb->ingress_ifindex);
	if (!ok)
		return TC_ACT_OK;

	fib_neigh_decide(skb, &fn, mode, fallback, 0);
	example_count(&fn);
	if (fn.action != FIB_NEIGH_PASS)
		fib_neigh_dec_ttl(&fn, l3, data_end);
	return fib_neigh_act_tc(&fn, eth, data_end);
}
