#!/usr/bin/env bash
# Sourced by compare.sh and cpu-budget.sh: veth_pair A B PREFIX puts namespaces A and B on the two ends of one veth,
# 192.0.2.1/24 in A and 192.0.2.2/24 in B (the interfaces PREFIX-va and PREFIX-vb), everything up.
veth_pair() {
  local a=$1 b=$2 p=$3
  ip netns add $a; ip netns add $b
  ip link add $p-va type veth peer name $p-vb
  ip link set $p-va netns $a; ip link set $p-vb netns $b
  ip -n $a addr add 192.0.2.1/24 dev $p-va; ip -n $b addr add 192.0.2.2/24 dev $p-vb
  for n in $a $b; do ip -n $n link set lo up; done
  ip -n $a link set $p-va up; ip -n $b link set $p-vb up
}
