# Sourced by the bench scripts (scale.sh, idle.sh): an "internet" of network namespaces named after the caller's $P:
# namespace $P-inet holds bridge br0; attach puts another namespace on it; internet_up makes both and the server's
# namespace $P-srv at the given address. Everything it makes starts with "$P-", which the callers' cleanup removes.

attach() { # NS IFNAME ADDRESS: a veth from NS to the bridge, ADDRESS/24 on NS's end
  ip link add $2 type veth peer name $2b
  ip link set $2 netns $1; ip link set $2b netns $P-inet
  ip -n $P-inet link set $2b master br0; ip -n $P-inet link set $2b up
  ip -n $1 addr add $3/24 dev $2; ip -n $1 link set $2 up
}

internet_up() { # SERVER_ADDRESS: the bridge's namespace, and the server's namespace $P-srv on the bridge
  ip netns add $P-inet; ip -n $P-inet link set lo up
  ip -n $P-inet link add br0 type bridge; ip -n $P-inet link set br0 up
  ip netns add $P-srv; ip -n $P-srv link set lo up; attach $P-srv $P-s $1
}
